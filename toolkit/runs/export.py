"""tk export: a run's classifier as ONNX (optionally int8), checked against the run's own model before it is done.

The graph is written by torch.onnx's exporter (``dynamo=True``, the torch.export path PyTorch maintains; the
TorchScript tracer it replaces is deprecated and bakes shapes seen while tracing into the graph), with dynamic
batch and sequence axes. Its operators are then fused for ONNX Runtime by onnxscript's rewriter (attention, skip
LayerNorm, bias GELU: ONNX Runtime's contrib kernels; ``--no-fuse`` keeps standard ONNX operators for other
runtimes). int8 is ONNX Runtime's dynamic quantization (weights int8 with a scale per output channel, activations
quantized per batch). The export is built in a hidden folder beside the output and renamed
into place only after the check passed, so a refused or interrupted export leaves nothing behind that looks
finished.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.config import CORE_SETTINGS, long_text_in_windows, window_stride_of
from toolkit.errors import TkError
from toolkit.runs.evaluate import rows_to_score
from toolkit.runs.export_check import MIN_AGREEMENT, compare, describe
from toolkit.runs.exported import MANIFEST, MODEL_FILE, OnnxRun, open_session
from toolkit.runs.folders import make_output_folder
from toolkit.runs.saved import VOCABULARY_FILES, load_run, read_run_config
from toolkit.saving import write_json, write_text

OPSET = 18
INPUTS = ("input_ids", "attention_mask")
TOKENIZER_FILES = VOCABULARY_FILES + ("tokenizer_config.json", "special_tokens_map.json", "config.json")


def default_output(run_dir: Path, quantize: str | None) -> Path:
    return run_dir / ("onnx-int8" if quantize == "int8" else "onnx")


def exportable_model(run_dir: Path) -> Any:
    """The run's classifier through transformers, on the CPU in float32: what the ONNX graph is traced from."""
    model = load_run(run_dir).model
    return model.to("cpu").float().eval()


def write_onnx(model: Any, path: Path, max_length: int) -> None:
    import torch

    length = max(4, min(max_length, 16))
    ids = torch.full((2, length), 1, dtype=torch.long)
    mask = torch.ones((2, length), dtype=torch.long)
    mask[1, length // 2:] = 0  # a padded row, so the mask's use is in the graph
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with quiet_exporter():
            program = torch.onnx.export(model, (), kwargs={"input_ids": ids, "attention_mask": mask},
                                        input_names=list(INPUTS), output_names=["logits"], opset_version=OPSET,
                                        dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                                        "attention_mask": {0: batch, 1: sequence}},
                                        dynamo=True, external_data=False, verbose=False)
            program.save(str(path))
    except Exception as error:  # torch.export's many exception types: what it cannot trace
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TkError(f"torch.onnx cannot export this model ({type(error).__name__}: {first[:300]}).") from None


def fuse_for_onnx_runtime(path: Path) -> dict[str, int]:
    """Rewrite the graph in ``path`` with ONNX Runtime's fused transformer operators; returns each fusion's count.

    On a MiniLM IMDB run (2,000 reviews at 128 tokens) float32 scored 1.27x and int8 1.18x faster fused, with the
    same answers (benchmarks/NOTES.md). A graph the rewriter cannot read is left as it was (an empty count)."""
    from onnxscript import ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    try:
        with quiet_exporter():
            model, counts = optimize_for_ort(ir.load(str(path)))
            ir.save(model, str(path))
    except Exception:  # the rewriter's own exception types: the unfused graph is still a correct export
        return {}
    return {name: int(count) for name, count in counts.items() if count}


def quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_exporter():
        # a scale per output channel, not per matrix: on a MiniLM IMDB run, 96.7% label agreement against 90.7%
        # per tensor, at the same speed (benchmarks/NOTES.md)
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


@contextlib.contextmanager
def quiet_exporter():
    """The exporters' progress prints and deprecation warnings are for their developers: tk says what it does."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("", "torch", "torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_run(pm, run_dir: Path, quantize: str | None, output: Path | None, check_data: str | None,
               min_agreement: float = MIN_AGREEMENT, echo: Callable[[str], None] = print,
               fuse: bool = True) -> dict[str, Any]:
    """Export, check on the run's test rows (or ``check_data``), and only then put the folder in place.
    Returns the manifest written (tk_export.json)."""
    import onnxruntime
    import torch

    from toolkit.evaluation.bare_bert import BareTokenizer  # torch: imported when used, not at tk's start

    output_given = output is not None
    output = output or default_output(run_dir, quantize)
    if output.exists():
        raise TkError(f"{output} already exists; remove it first, or " + ("name another folder with --output."
                      if output_given else "pass --output PATH for another folder."))
    run = load_run(run_dir, bare=True)  # tk's default scoring path: what the export must agree with
    chosen = rows_to_score(pm, run, check_data, option="--check-data")  # read before the slow export: fails fast
    make_output_folder(output.parent)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    except OSError as error:  # a folder that takes no new folder (/proc): said as tk run says it for --output
        raise TkError(f"Cannot create the export in {output.parent}: {error.strerror}. Pass --output PATH in a "
                      "folder you can write.") from None
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is a folder like any other
    try:
        echo(f"Exporting {run_dir} with torch.onnx (opset {OPSET})" + (", fused for ONNX Runtime" if fuse else "")
             + (", then int8" if quantize else ""))
        graph = staging / "model-float32.onnx"
        write_onnx(exportable_model(run_dir), graph, run.task.max_length)
        fusions = fuse_for_onnx_runtime(graph) if fuse else None
        if fuse and not fusions:
            echo("No operator could be fused for ONNX Runtime: the graph keeps standard ONNX operators.")
        if quantize == "int8":
            quantize_int8(graph, staging / MODEL_FILE)
            graph.unlink()
        else:
            graph.rename(staging / MODEL_FILE)
        for name in TOKENIZER_FILES:
            if (run_dir / "model" / name).is_file():
                shutil.copy2(run_dir / "model" / name, staging / name)
        backend = "onnx-int8" if quantize == "int8" else "onnx"
        tokenizer = BareTokenizer.from_folder(staging) or run.tokenizer
        manifest = manifest_of(run, run_dir, quantize, min_agreement, onnxruntime.__version__, torch.__version__)
        manifest["fusions"] = fusions
        export = OnnxRun(staging, run_dir, run.task, open_session(staging / MODEL_FILE), tokenizer, run.labels,
                         run.thresholds, backend, manifest["pad_token_id"])
        echo(f"Checking it on {len(chosen.rows):,} rows ({chosen.described}, {chosen.source}) against the run's model")
        check = compare(pm, run, export, chosen.rows, chosen.task)
        check.update({"data_source": chosen.source, "split": chosen.described})
        lines = describe(check, backend)
        for line in lines:
            echo(line)
        if check["agreement"] is None or check["agreement"] < min_agreement:
            # int8 moves answers near a decision boundary by itself; a float32 export should agree
            remedies = (["export without --quantize (float32)", "lower --min-agreement where the accuracy and "
                         "McNemar lines above show no loss"] if quantize
                        else ["export with --no-fuse (standard ONNX operators)"] if fusions
                        else ["report it as a bug"]) + ["check on other data with --check-data FILE"]
            remedy = ", or ".join(remedies)
            raise TkError(f"the export gives the run's answer on {check['agreement'] or 0:.2%} of {check['rows']:,} "
                          f"rows, under the floor of {min_agreement:.0%} (--min-agreement): not written. "
                          f"{remedy[0].upper()}{remedy[1:]}.")
        manifest["check"] = check
        write_text(staging / "README.md", card(manifest, lines))
        write_json(staging / MANIFEST, manifest)  # last: the folder is an export from now on
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    manifest["folder"] = str(output)
    return manifest


def manifest_of(run: Any, run_dir: Path, quantize: str | None, min_agreement: float, ort_version: str,
                torch_version: str) -> dict[str, Any]:
    import json

    task = read_run_config(run_dir)["task"]
    config = json.loads((run_dir / "model" / "config.json").read_text(encoding="utf-8"))
    return {"schema": "tk.export/1", "format": "onnx", "quantize": quantize, "file": MODEL_FILE, "opset": OPSET,
            "inputs": list(INPUTS), "outputs": ["logits"], "exporter": f"torch.onnx (dynamo) {torch_version}",
            "onnxruntime": ort_version, "run_dir": str(run_dir.resolve()),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "labels": list(run.labels), "problem": run.task.problem,
            "thresholds": dict(zip(run.labels, map(float, run.thresholds))) if run.multi_label else None,
            "pad_token_id": int(config.get("pad_token_id") or 0), "min_agreement": min_agreement,
            "task": {key: value for key, value in task.items() if key == "name" or key in CORE_SETTINGS}}


def card(manifest: dict[str, Any], check_lines: list[str]) -> str:
    """README.md of the export: what was exported, from which run, and how it was checked."""
    quantized = ("int8 (ONNX Runtime dynamic quantization: int8 weights with a scale per output channel; "
                 "activations quantized per batch, so a text's scores depend a little on the texts scored with it)"
                 if manifest["quantize"] else "float32")
    fused = (f"Fused for ONNX Runtime ({', '.join(f'{name} x{count}' for name, count in manifest['fusions'].items())}"
             "): the graph uses ONNX Runtime's contrib operators and runs in ONNX Runtime only."
             if manifest["fusions"] else "Standard ONNX operators only (not fused for ONNX Runtime).")
    return "\n".join([
        "---", "library_name: onnx", "pipeline_tag: text-classification", "tags: [tk, onnx]", "---", "",
        f"# ONNX export of {Path(manifest['run_dir']).name}", "",
        f"Exported by `tk export` on {manifest['created']} from the tk run `{manifest['run_dir']}` with "
        f"{manifest['exporter']} (opset {manifest['opset']}), {quantized}. Inputs `input_ids` and `attention_mask` "
        "(int64, dynamic batch and sequence axes), output `logits`; the tokenizer files and `config.json` "
        f"(labels: {', '.join(manifest['labels'])}) are beside `model.onnx`; `tk_export.json` holds the task "
        f"settings that shape the input (max_length, truncation, long_text) and this check. {fused}", "",
        "## How it was checked", "",
        f"Before it was written, tk scored the {manifest['check']['split']} ({manifest['check']['data_source']}) with "
        f"ONNX Runtime {manifest['onnxruntime']} and with the run's own model; the floor for label agreement was "
        f"{manifest['min_agreement']:.0%}.", "", "```", *check_lines, "```", "",
        "Use it with `tk serve FOLDER`, `tk predict FOLDER TEXT` or `tk evaluate FOLDER` (docs/deploy.md).",
        *windows_note(manifest["task"]), ""])


def windows_note(task: dict[str, Any]) -> list[str]:
    """A chunks run's export: the windows and pooling a user outside tk must reproduce."""
    if not long_text_in_windows(task.get("long_text")):
        return []
    max_length, stride = int(task["max_length"]), window_stride_of(task["max_length"], task.get("stride"))
    return ["", f"The run read a text longer than {max_length} tokens as overlapping windows of {max_length} tokens "
            f"(special tokens included), each sharing {stride} tokens with the one before, and pooled the windows' "
            f"answers per text ({task.get('pooling', 'logits')}; docs/long-documents.md). tk serve, tk predict and "
            "tk evaluate on this folder do so; outside tk, cutting a text to its first window gives another answer."]
