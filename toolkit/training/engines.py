"""Which engine trains a run: resolved once, printed, recorded in the run's config.json, reused by resume."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.config import TaskConfig
from toolkit.errors import TkError
from toolkit.plugins import RETIRED_ENGINES
from toolkit.records import EngineInfo


@dataclass(frozen=True)
class EngineChoice:
    engine: EngineInfo
    why: str  # how it was chosen, for the run's first lines

    @property
    def name(self) -> str:
        return self.engine.name

    def describe(self) -> str:
        return f"Engine: {self.name} ({self.why})"

    def strategy(self, task: TaskConfig):
        """The engine's step strategy for ``task`` (toolkit.training.strategy)."""
        if self.engine.strategy is None:
            raise TkError(f"The engine '{self.name}' (plugin '{self.engine.plugin}') provides no step strategy: "
                          "its EngineInfo needs strategy=... (docs/hooks.md).")
        return self.engine.strategy(task)


def resolve_engine(pm, task: TaskConfig, recorded: str | None = None) -> EngineChoice:
    """The engine for ``task``: the one a resumed run recorded, the task's ``engine``, or the best available."""
    if recorded in RETIRED_ENGINES:
        raise TkError(RETIRED_ENGINES[recorded])
    if recorded:
        try:
            return EngineChoice(pm.engine(recorded), "recorded by the run being resumed")
        except TkError as error:
            raise TkError(f"The run was trained by the engine '{recorded}'; install or enable its plugin "
                          "to resume it") from error
    if task.engine != "auto":
        try:
            engine = pm.engine(task.engine)
        except TkError as error:
            raise TkError(f"task '{task.name}', key 'engine'") from error
        reason = engine.unavailable(task)
        if reason:
            raise TkError(f"task '{task.name}': engine = \"{engine.name}\" cannot train here: {reason}. "
                          "Use --set engine=auto to take the best engine available.")
        return EngineChoice(engine, "set by the task")
    ranked = sorted(pm.engines().values(), key=lambda e: -e.auto_priority)
    passed_over = []
    for engine in ranked:
        reason = engine.unavailable(task)
        if reason is None:
            why = "auto" + "".join(f"; {name}: {why}" for name, why in passed_over)
            return EngineChoice(engine, why)
        passed_over.append((engine.name, reason))
    raise TkError("No training engine can run here: "
                  + "; ".join(f"{name}: {why}" for name, why in passed_over or [("none", "no engine is registered")])
                  + ". Is the built-in 'eager' plugin disabled (TK_DISABLE_PLUGINS)?")


def auto_engine_name(pm, task: TaskConfig) -> str:
    """What ``engine = "auto"`` would pick here (for ``tk list``), or '-' where none can train."""
    try:
        return resolve_engine(pm, task).name
    except TkError:
        return "-"
