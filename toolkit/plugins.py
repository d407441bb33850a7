"""The plugin manager: built-in and installed plugins come in through one door."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from toolkit import hookspecs
from toolkit.config import CORE_SETTINGS
from toolkit.errors import TkError, unknown_name
from toolkit.records import DatasetInfo, EngineInfo, ModelInfo, Setting

ENTRY_POINT_GROUP = "tk"
BUILTIN_DISTRIBUTION = "tk-toolkit"


@dataclass(frozen=True)
class PluginOrigin:
    name: str
    origin: str  # "built-in", "package NAME VERSION" or "local module PATH"
    hooks: tuple[str, ...]


# Engines tk once had, and what replaces them.
RETIRED_ENGINES = {
    "trainer": 'The engine "trainer" (the Hugging Face Trainer) was retired: every engine now trains through '
               'tk\'s own training loop. Use engine = "eager" (CPU or GPU, also under torchrun) or "auto"; '
               "a run it trained cannot be resumed (start it again).",
}


class PluginManager:
    """A small typed wrapper around ``pluggy.PluginManager``.

    Nothing is loaded until ``load()``; the CLI and the tests decide when.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("tk")
        self.pm.add_hookspecs(hookspecs)
        self.hook = self.pm.hook
        self._origins: dict[str, str] = {}
        self._registries: dict[str, dict[str, Any]] = {}

    # -- loading -----------------------------------------------------------

    def load(self, local_modules: tuple[str, ...] = (), search_path: Path | None = None) -> PluginManager:
        """Load entry-point plugins, then local modules named in tasks.toml."""
        for name in disabled_plugins():
            self.pm.set_blocked(name)
        self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for plugin, dist in self.pm.list_plugin_distinfo():
            name = self.pm.get_name(plugin)
            if dist.metadata["name"] == BUILTIN_DISTRIBUTION:
                self._origins[name] = "built-in"
            else:
                self._origins[name] = f"package {dist.metadata['name']} {dist.version}"
        for module_name in local_modules:
            self.load_local_module(module_name, search_path)
        if os.environ.get("TK_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda text: sys.stderr.write(f"[tk plugins] {text}"))
            self.pm.enable_tracing()
        return self

    def load_local_module(self, module_name: str, search_path: Path | None) -> None:
        """A module named in tasks.toml 'plugins': ``NAME.py`` (or ``NAME/__init__.py``) next to tasks.toml,
        else an installed module of that name.

        A local file is loaded by its path under the private name ``tk_local_plugins.NAME``; nothing
        goes on ``sys.path``, so a ``datasets.py`` next to tasks.toml can never replace the real library.
        """
        if not isinstance(module_name, str) or not all(part.isidentifier() for part in module_name.split(".")):
            raise TkError(f"tasks.toml 'plugins': {module_name!r} is not a module name. List Python module "
                          "names (letters, digits, '_'), like plugins = [\"my_plugin\"], not paths.")
        if self.pm.is_blocked(module_name) or self.pm.has_plugin(module_name):
            return
        path = _local_file(module_name, search_path)
        try:
            module = _import_file(module_name, path) if path else importlib.import_module(module_name)
        except SyntaxError as error:
            raise TkError(f"Plugin module '{module_name}' listed in tasks.toml 'plugins' has a syntax error: "
                          f"{error.msg} ({error.filename}, line {error.lineno}).") from None
        except ImportError as error:
            raise TkError(
                f"Cannot import plugin module '{module_name}' listed in tasks.toml 'plugins': {error}. "
                f"Put {module_name}.py next to tasks.toml or install it."
            ) from None
        except SystemExit as error:  # sys.exit() in a plugin would end tk silently, with its exit code
            raise TkError(f"Plugin module '{module_name}' listed in tasks.toml 'plugins' called sys.exit({error.code!r}) "
                          f"while being imported{_where(error)}; a plugin must not exit. Remove that call, or the "
                          "module from 'plugins'.") from None
        except Exception as error:  # the module's own code failed at import: say where, once
            raise TkError(f"Plugin module '{module_name}' listed in tasks.toml 'plugins' failed to import: "
                          f"{type(error).__name__}: {error}{_where(error)}.") from None
        self.register(module, module_name, f"local module {getattr(module, '__file__', module_name)}")

    def register(self, plugin: Any, name: str, origin: str = "registered in code") -> None:
        self.pm.register(plugin, name=name)
        self._origins[name] = origin
        self._registries.clear()

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._origins.pop(name, None)
        self._registries.clear()

    # -- introspection -------------------------------------------------------

    def plugins(self) -> list[PluginOrigin]:
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            rows.append(PluginOrigin(name, self._origins.get(name, "registered in code"), hooks))
        return sorted(rows, key=lambda row: row.name)

    # -- registries ----------------------------------------------------------

    def datasets(self) -> dict[str, DatasetInfo]:
        return self._collect("tk_register_datasets", "dataset")

    def models(self) -> dict[str, ModelInfo]:
        return self._collect("tk_register_models", "model")

    def engines(self) -> dict[str, EngineInfo]:
        return self._collect("tk_register_engines", "engine")

    def settings(self) -> dict[str, Setting]:
        """Task keys declared by plugins (the core keys are TaskConfig's fields)."""
        declared = self._collect("tk_register_settings", "task key")
        for name, setting in declared.items():
            if name in CORE_SETTINGS:
                raise TkError(f"Plugin '{setting.plugin}' declares the task key '{name}', which is a core key of tk. "
                              f"Rename it, or block the plugin with TK_DISABLE_PLUGINS={setting.plugin}.")
        return declared

    def dataset(self, name: str) -> DatasetInfo:
        return self._lookup(self.datasets(), "dataset", name)

    def model(self, name: str, base: Path | None = None) -> ModelInfo:
        """A registered model, else one a plugin recognises by name (``tk_resolve_model``: hf:ORG/NAME, a folder)."""
        models = self.models()
        if name not in models and isinstance(name, str):
            found = self.hook.tk_resolve_model(name=name, base=base)
            if found is not None:
                return found
        try:
            return self._lookup(models, "model", name)
        except TkError as error:
            raise TkError(f"{error} Or any Hub model as hf:ORG/NAME, or a folder saved with save_pretrained "
                          "(a tk run's model/ folder too).") from None

    def engine(self, name: str) -> EngineInfo:
        engines = self.engines()
        if name in RETIRED_ENGINES and name not in engines:
            raise TkError(RETIRED_ENGINES[name])
        return self._lookup(engines, "engine", name)

    def first(self, hook_name: str, what: str, owner: str, **kwargs: Any) -> Any:
        """Call a firstresult hook; "no plugin answered" becomes a TkError naming the hook and ``what``.

        ``owner`` is the plugin that registered the name asked for (it should have answered).
        """
        result = getattr(self.hook, hook_name)(**kwargs)
        if result is None:
            state = "is blocked" if owner and self.pm.is_blocked(owner) else "does not answer it"
            raise TkError(f"No plugin answered {hook_name} for {what}: its plugin '{owner or '?'}' {state}. "
                          "Check TK_DISABLE_PLUGINS and the plugin's hook for this name.")
        return result

    @staticmethod
    def _lookup(registry: dict[str, Any], kind: str, name: str) -> Any:
        try:
            return registry[name]
        except KeyError:
            raise unknown_name(kind, name, registry) from None

    def _collect(self, hook_name: str, kind: str) -> dict[str, Any]:
        if hook_name in self._registries:
            return self._registries[hook_name]
        found: dict[str, Any] = {}
        for impl in getattr(self.hook, hook_name).get_hookimpls():

            def register(record: Any, _plugin: str = impl.plugin_name) -> None:
                expected = RECORD_TYPES[kind]
                if not isinstance(record, expected) or not isinstance(record.name, str):
                    raise TkError(f"Plugin '{_plugin}' answered {hook_name} with register({record!r:.60}), "
                                  f"a {type(record).__name__}; register takes a {expected.__name__} "
                                  f"(docs/hooks.md). Fix the plugin, or block it with TK_DISABLE_PLUGINS={_plugin}.")
                if record.name in found:
                    raise TkError(
                        f"Two plugins register the {kind} '{record.name}': "
                        f"'{found[record.name].plugin}' and '{_plugin}'. "
                        f"Block one with TK_DISABLE_PLUGINS={_plugin}."
                    )
                found[record.name] = replace(record, plugin=_plugin)

            impl.function(register=register)
        self._registries[hook_name] = found
        return found


RECORD_TYPES = {"dataset": DatasetInfo, "model": ModelInfo, "engine": EngineInfo, "task key": Setting}


def wrong_answer(hook_name: str, plugin: str, answer: Any, expected: str) -> TkError:
    """A plugin's hook answered something of the wrong type: named with the plugin and the hook."""
    return TkError(f"Plugin '{plugin}' answered {hook_name} with {answer!r:.60} ({type(answer).__name__}); it must "
                   f"return {expected} (docs/hooks.md). Fix the plugin, or block it with TK_DISABLE_PLUGINS={plugin}.")


def answers(hook: Any, **kwargs: Any) -> list[tuple[str, Any]]:
    """Each plugin's answer to a hook that collects answers, with the plugin's name, in registration order
    (the reverse of pluggy's call order: a later plugin's keys override an earlier one's)."""
    found = []
    for impl in hook.get_hookimpls():
        if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
            continue
        keyword = {name: kwargs[name] for name in getattr(impl, "kwargnames", ()) if name in kwargs}  # as pluggy
        found.append((impl.plugin_name, impl.function(*[kwargs[name] for name in impl.argnames], **keyword)))
    return found


LOCAL_PACKAGE = "tk_local_plugins"


def _local_file(module_name: str, folder: Path | None) -> Path | None:
    if folder is None or "." in module_name:
        return None
    for candidate in (folder / f"{module_name}.py", folder / module_name / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _import_file(module_name: str, path: Path) -> ModuleType:
    """Execute ``path`` as ``tk_local_plugins.NAME``; a package folder may import its own submodules."""
    if LOCAL_PACKAGE not in sys.modules:
        package = ModuleType(LOCAL_PACKAGE)
        package.__path__ = []
        sys.modules[LOCAL_PACKAGE] = package
    qualified = f"{LOCAL_PACKAGE}.{module_name}"
    locations = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(qualified, path, submodule_search_locations=locations)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(qualified)
    sys.modules[qualified] = module  # a package's relative imports look itself up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            sys.modules.pop(qualified, None)
        else:
            sys.modules[qualified] = previous
        raise
    return module


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    return f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def disabled_plugins() -> list[str]:
    """Plugin names listed in TK_DISABLE_PLUGINS (comma-separated)."""
    return [name.strip() for name in os.environ.get("TK_DISABLE_PLUGINS", "").split(",") if name.strip()]

