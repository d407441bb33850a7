"""Reading a run folder: the one door every command that uses a run goes through.

``open_run`` checks that the run is complete (status.json), that its saved
files match the checksums tk run recorded when it saved them
(checksums.json: the model's weights, config and tokenizer, and the run's
own JSON and CSV files), and that each JSON file holds what tk wrote (an
object with the keys the commands read, of the right types). Anything else
is one TkError that names the damaged file. ``allow_incomplete`` (the
commands' ``--allow-incomplete``) lets an expert use a run that is not
complete or whose files changed: the returned folder's ``warning`` says so,
and every command that answers from it prints that warning with its answer.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import TkError
from toolkit.runs.folders import run_status
from toolkit.runs.shapes import CONFIG, MANIFEST, METRICS, wrong_keys
from toolkit.saving import write_json

CHECKSUMS_FILE = "checksums.json"
# The files of a finished run that the commands read; report.html is left out (tk report rewrites it).
RECORDED = ("config.json", "manifest.json", "metrics.json", "history.json", "predictions.csv", "left_out.json")
DAMAGED = "The run folder is damaged; train again (tk run) or restore it from a copy."
INCOMPLETE_FLAG = "--allow-incomplete"
_CHUNK = 1 << 20


class NotComplete(TkError):
    """A run that is not complete and intact. The CLI adds "to use it anyway: --allow-incomplete" where the
    command has that option (tk export, serve and audit have none)."""


@dataclass
class RunFolder:
    """A run folder, validated. ``warning``: why its answers are not a complete run's (None when they are)."""

    path: Path
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    warning: str | None = None
    _predictions: list[dict[str, str]] | None = field(default=None, repr=False)

    @property
    def incomplete(self) -> bool:
        return self.warning is not None

    def predictions(self) -> list[dict[str, str]]:
        """predictions.csv's rows; a file that is not tk's is a TkError naming it."""
        if self._predictions is None:
            self._predictions = read_predictions(self.path / "predictions.csv",
                                                 (self.manifest or {}).get("labels") or [])
        return self._predictions


TRIAL_STATES = ("trial", "pruned")  # a tk tune trial's run: validation only, no weights


def refuse_other_tk_folders(path: Path) -> None:
    """An export, a tune folder or a tune trial where a run is needed: each is what it is, not a damaged run."""
    if (path / "tk_export.json").is_file():
        try:
            source = json.loads((path / "tk_export.json").read_text(encoding="utf-8")).get("run_dir")
        except (OSError, ValueError, AttributeError):
            source = None
        raise TkError(f"{path} is a tk export, not a run: tk predict, tk evaluate and tk serve take it; this command "
                      "needs the run it was exported from" + (f" ({source})." if source else "."))
    if (path / "tune.json").is_file():
        raise TkError(f"{path} is a tk tune folder, not a run: its final runs are in {path / 'final'} (tk tune's "
                      "last line names the one to use).")
    if (path / "config.json").is_file() and run_status(path) in TRIAL_STATES:
        raise TkError(f"{path} is a tk tune trial's run, scored on validation alone: it keeps no weights or test "
                      "scores. Use the tune's final runs (its final/ folder; tk tune's last line names the one to "
                      "use).")


def open_run(path: Path, allow_incomplete: bool = False, need: tuple[str, ...] = ("metrics.json", "manifest.json"),
             verify: str = "all") -> RunFolder:
    """The run folder at ``path``, validated; ``need``: the files the caller reads besides config.json.

    ``verify``: "all" hashes every recorded file (tk predict, tk evaluate: the model answers), "results"
    hashes the run's own files and checks the model's by size (tk compare, tk report), "sizes" checks
    sizes only (tk list)."""
    path = Path(path)
    if not path.exists():
        raise TkError(f"{path}: no such folder. tk list --runs shows the run folders.")
    if not path.is_dir():
        raise TkError(f"{path} is a file, not a run folder. tk list --runs shows the run folders.")
    if path.name == "model" and (path.parent / "status.json").is_file():  # RUN/model: a common slip
        raise TkError(f"{path} is the model folder inside the run {path.parent}; pass the run folder: "
                      f"{path.parent}.")
    refuse_other_tk_folders(path)
    if not (path / "config.json").exists() and not (path / "status.json").exists():  # never a run, not a damaged one
        inner = [p.name for p in sorted(path.iterdir()) if (p / "config.json").is_file()]
        raise TkError(f"{path} is not a tk run folder (no config.json or status.json). "
                      + (f"It holds run folders ({', '.join(inner[:3])}{', ...' if len(inner) > 3 else ''}): "
                         "name one." if inner else "tk list --runs shows the run folders."))
    status = run_status(path)
    problems = []
    if status != "complete":
        problems.append(f"its status is '{status}', not 'complete'")
    changed = verify_checksums(path, verify)
    if changed:
        problems.append(changed)
    warning = None
    if problems:
        reason = "; ".join(problems)
        if not allow_incomplete:
            # a tk cv folder has no single model or metrics.json to use anyway: not NotComplete, whose hint
            # offers --allow-incomplete; its advice is tk cv --resume
            refusal = TkError if kind_of(path) == "cv" else NotComplete
            raise refusal(f"{path} is not a complete, intact tk run: {reason}. {advice(path, status)}")
        warning = f"NOT A COMPLETE RUN ({reason}): answers from {path.name} are not a finished run's results."
    if "metrics.json" in need and kind_of(path) == "cv":  # its metrics are cv.json's, per fold and pooled
        raise TkError(cv_has_no_model(path))
    config = read_object(path / "config.json", status, wrong_type=False)
    if not isinstance(config, dict) or "task" not in config:
        raise TkError(f"{path / 'config.json'} is not a tk run config (expected an object with a 'task' table). "
                      f"{DAMAGED}")
    wrong = wrong_keys(config, CONFIG)
    if wrong:
        raise TkError(f"{path / 'config.json'}: {', '.join(wrong)} not what tk wrote. {DAMAGED}")
    folder = RunFolder(path, status, config, warning=warning)
    if "metrics.json" in need:
        folder.metrics = check_metrics(path / "metrics.json", read_object(path / "metrics.json", status))
    if "manifest.json" in need:
        folder.manifest = check_manifest(path / "manifest.json", read_object(path / "manifest.json", status))
    return folder


def cv_has_no_model(path: Path) -> str:
    return (f"{path} is a tk cv folder: it has no single model to use (each fold's model scored the rows it did not "
            f"train on; see cv.json and oof.csv). Use a fold's run ({path}/fold-1 ...), or train one model on all "
            "the data with tk run.")


def advice(path: Path, status: str) -> str:
    if status == "interrupted":
        command = "tk cv" if kind_of(path) == "cv" else "tk run"
        return f"Finish it first: {command} --resume {path}."
    if status == "running":
        return "It is still running (or was killed): wait until tk run says where it saved it (tk list --runs)."
    if status == "failed":
        return "Its error is in status.json; train again (tk run)."
    return DAMAGED


def kind_of(path: Path) -> str | None:
    """config.json's kind ("cv" for a tk cv folder), or None."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return config.get("kind") if isinstance(config, dict) else None


def read_object(path: Path, status: str = "complete", wrong_type: bool = True) -> Any:
    """A JSON object from a run folder; missing, unreadable or not an object: a TkError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TkError(f"{path} is missing (run status: {status}). "
                      + (DAMAGED if status == "complete" else advice(path.parent, status))) from None
    except (OSError, UnicodeDecodeError) as error:
        raise TkError(f"{path}: cannot read it ({getattr(error, 'strerror', None) or error}). {DAMAGED}") from None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise TkError(f"{path} is not valid JSON ({str(error).splitlines()[0][:120]}). {DAMAGED}") from None
    if wrong_type and not isinstance(value, dict):
        raise TkError(f"{path} holds {type(value).__name__ if value is not None else 'null'}, not the object tk "
                      f"wrote. {DAMAGED}")
    return value


def check_metrics(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers every command reads are there, and every key is of the kind tk writes."""
    wrong = [key for key in ("accuracy", "f1", "history") if key not in metrics] + wrong_keys(metrics, METRICS)
    if wrong:
        raise TkError(f"{path}: {', '.join(dict.fromkeys(wrong))} missing or not what tk wrote. {DAMAGED}")
    return metrics


def check_manifest(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    wrong = ([] if "labels" in manifest else ["labels"]) + wrong_keys(manifest, MANIFEST)
    if wrong:
        raise TkError(f"{path}: {', '.join(wrong)} missing or not what tk wrote. {DAMAGED}")
    return manifest


def read_predictions(path: Path, labels: list[str]) -> list[dict[str, str]]:
    """predictions.csv as tk wrote it: a row per test text with its label, prediction and probabilities."""
    try:
        csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size + 1))  # one long text is one field
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise TkError(f"{path} is missing. {DAMAGED}") from None
    except UnicodeDecodeError as error:
        raise TkError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}). {DAMAGED}") from None
    except (OSError, csv.Error) as error:
        raise TkError(f"{path}: cannot read it ({error}). {DAMAGED}") from None
    needed = ["label", "predicted"] + [f"p_{name}" for name in labels]
    for number, row in enumerate(rows, 2):
        if None in row or any(row.get(key) is None for key in needed):
            raise TkError(f"{path}: line {number} is cut short or has extra fields. {DAMAGED}")
        try:
            values = [float(row[f"p_{name}"]) for name in labels]
        except ValueError:
            raise TkError(f"{path}: line {number} has a probability that is not a number. {DAMAGED}") from None
        if not all(0 <= v <= 1 for v in values):
            raise TkError(f"{path}: line {number} has a probability outside 0..1. {DAMAGED}")
    return rows


# -- checksums, recorded when tk run saves and checked when a command opens the run --------


def recorded_files(run_dir: Path) -> list[Path]:
    """Every file of ``model/`` and the run's own result files, as they are when the run is saved."""
    model = sorted(p for p in (run_dir / "model").rglob("*") if p.is_file()) if (run_dir / "model").is_dir() else []
    return model + [run_dir / name for name in RECORDED if (run_dir / name).is_file()]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_checksums(run_dir: Path) -> None:
    """checksums.json: each saved file's size and SHA-256, written last before the run is marked complete."""
    files = {str(p.relative_to(run_dir)): {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
             for p in recorded_files(run_dir)}
    write_json(run_dir / CHECKSUMS_FILE, {"algorithm": "sha256", "files": files})


def verify_checksums(run_dir: Path, verify: str = "all") -> str | None:
    """What differs from checksums.json, in words; None when everything matches (or the run predates it)."""
    path = run_dir / CHECKSUMS_FILE
    if verify == "none" or not path.exists():
        return None  # a run saved before tk recorded checksums: the structural checks still apply
    recorded = read_object(path).get("files")
    if not isinstance(recorded, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("bytes"), int) and isinstance(v.get("sha256"), str)
            for v in recorded.values()):
        raise TkError(f"{path} is not what tk wrote. {DAMAGED}")
    for name, expected in recorded.items():
        file = run_dir / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise TkError(f"{path} names a file outside the run folder ({name}). {DAMAGED}")
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            return f"{file} is missing"
        except OSError as error:
            raise TkError(f"{file}: cannot read it ({error.strerror}).") from None
        if size != expected["bytes"]:
            return f"{file} has changed since the run saved it ({size:,} bytes, saved {expected['bytes']:,})"
        hashed = verify == "all" or (verify == "results" and not name.startswith("model/"))
        try:
            if hashed and sha256_of(file) != expected["sha256"]:
                return f"{file} has changed since the run saved it (its SHA-256 differs)"
        except OSError as error:
            raise TkError(f"{file}: cannot read it ({error.strerror}).") from None
    return None
