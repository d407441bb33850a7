"""Checkpoints are whole or absent: each file and rename fsynced, a failed write leaves no partial folder and
the previous checkpoint resumable, and a resume names a damaged newest checkpoint and uses the one before."""

import errno
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import InterruptAt, fails_with, ok, quiet, tk, train_toy
from toolkit.errors import TkError
from toolkit.runs import folders
from toolkit.runs.pipeline import resume_task
from toolkit.training import checkpoints
from toolkit.training.progress import Progress

REPO = Path(__file__).resolve().parents[1]
STEPS = 160 // 8  # the toy task's steps per epoch: checkpoint-20, checkpoint-40, ...


def cut_short(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def garbage(path):
    path.write_text("{ not json")


# (engine, file in the newest checkpoint, what happens to it, what the message says about it). Both engines write
# the core loop's one format: training_state.pt and tk_state.json.
DAMAGE = [
    ("eager", "training_state.pt", cut_short, "training_state.pt: "),
    ("eager", "training_state.pt", flip_a_byte, "training_state.pt: its bytes changed since it was written"),
    ("eager", "training_state.pt", lambda path: path.write_bytes(b""), "training_state.pt: 0 bytes where"),
    ("eager", "tk_state.json", garbage, "tk_state.json: "),
    ("cuda-graphs", "training_state.pt", cut_short, "training_state.pt: "),
    ("cuda-graphs", "tk_state.json", garbage, "tk_state.json: "),
]


def two_checkpoints(pm, project, engine, output="runs"):
    """A 3-epoch run stopped in its third epoch: checkpoint-20 and checkpoint-40 both kept."""
    stopped = train_toy(pm, project, output, progress=InterruptAt(2 * STEPS + 5), epochs=3, engine=engine,
                        resume_point_seconds=0)
    assert stopped.status == "interrupted"
    folder = stopped.run_dir / "checkpoints"
    assert [path.name for path in checkpoints.committed(folder)] == ["checkpoint-20", "checkpoint-40"]
    return stopped.run_dir


STOPPED: dict = {}  # engine -> a stopped run trained once for the module (it records its data by absolute path)


def copy_of_stopped_run(pm, project, engine):
    """A copy of the module's stopped run of ``engine``, in this test's project: each test damages its own."""
    if engine not in STOPPED:
        STOPPED[engine] = two_checkpoints(pm, project, engine, "stopped-once")
    copy = project / "runs" / STOPPED[engine].name
    shutil.copytree(STOPPED[engine], copy)
    return copy


def use_engine(monkeypatch, engine):
    if engine == "cuda-graphs":  # its loop runs eagerly without CUDA, as in the engine fixture
        import plugins.engines.cuda_graphs

        monkeypatch.setattr(plugins.engines.cuda_graphs, "unavailable", lambda task: None)


@pytest.mark.parametrize("engine,name,damage,said", DAMAGE, ids=lambda value: getattr(value, "__name__", None))
def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_resumed(pm, project, monkeypatch, engine, name,
                                                                           damage, said):
    use_engine(monkeypatch, engine)
    run_dir = copy_of_stopped_run(pm, project, engine)
    damage(run_dir / "checkpoints" / "checkpoint-40" / name)
    notes = []
    outcome = resume_task(pm, run_dir, Progress(notes.append, bar=False))
    assert outcome.status == "complete" and folders.run_status(run_dir) == "complete"
    damaged = [note for note in notes if "is damaged" in note]
    assert len(damaged) == 1, notes
    assert damaged[0].startswith("checkpoint-40 is damaged (") and said in damaged[0], damaged[0]
    assert damaged[0].endswith("; resuming from checkpoint-20"), damaged[0]
    assert len(outcome.metrics["history"]) == 3


@pytest.mark.parametrize("engine", ["eager", "cuda-graphs"])
def test_resuming_from_the_previous_checkpoint_gives_the_uninterrupted_weights(pm, project, monkeypatch, engine,
                                                                               with_dropout):
    use_engine(monkeypatch, engine)
    whole = train_toy(pm, project, "whole", epochs=3, engine=engine)
    run_dir = two_checkpoints(pm, project, engine)
    (run_dir / "checkpoints" / "checkpoint-40" / "training_state.pt").write_bytes(b"")  # what a power cut used to leave
    resumed = resume_task(pm, run_dir, quiet())
    assert resumed.metrics["accuracy"] == whole.metrics["accuracy"]
    for a, b in zip(resumed.metrics["history"], whole.metrics["history"]):
        assert a["validation_loss"] == pytest.approx(b["validation_loss"], abs=1e-6)
    ours, theirs = (load_file(run / "model" / "model.safetensors") for run in (run_dir, whole.run_dir))
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6)


def test_no_whole_checkpoint_is_a_one_line_error_that_says_start_again(pm, project):
    stopped = train_toy(pm, project, progress=InterruptAt(STEPS + 5), epochs=2)
    (stopped.run_dir / "checkpoints" / "checkpoint-20" / "training_state.pt").write_bytes(b"")  # kill -9, no fsync
    result = fails_with("", "run", "--resume", stopped.run_dir)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: No checkpoint of {stopped.run_dir} is whole: checkpoint-20 is damaged "
                           "(training_state.pt: 0 bytes where"), result.output
    assert last.endswith("Start it again: tk run toy --set epochs=2"), result.output  # the setting it ran with
    assert "Aborted" not in result.output
    assert folders.run_status(stopped.run_dir) == "interrupted"  # a refused resume changes nothing
    assert (stopped.run_dir / "checkpoints" / "checkpoint-20").is_dir()


def test_every_checkpoint_file_and_rename_is_fsynced(pm, project, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(handle):
        synced.append(os.readlink(f"/proc/self/fd/{handle}"))
        return real(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    run_dir = two_checkpoints(pm, project, "eager")
    folder = run_dir / "checkpoints"
    staged = folder / ".partial-checkpoint-40" / "checkpoint-40"
    assert str(staged / "training_state.pt") in synced
    state = next(i for i, path in enumerate(synced) if path.startswith(str(staged / ".tk_state.json.")))  # atomic
    assert synced.index(str(staged / "training_state.pt")) < state < synced.index(str(staged))  # the commit mark last
    assert synced.index(str(staged)) < len(synced) - 1 - synced[::-1].index(str(folder))  # then the rename
    recorded = checkpoints.read_state(folder / "checkpoint-40")["files"]
    assert recorded["training_state.pt"]["bytes"] == (folder / "checkpoint-40" / "training_state.pt").stat().st_size


class FullDiskAt:
    """torch.save that writes half of ``name`` in ``checkpoint`` and then fails as a full disk does."""

    def __init__(self, monkeypatch, checkpoint, name):
        self.real, self.checkpoint, self.name = torch.save, checkpoint, name
        monkeypatch.setattr(torch, "save", self.save)

    def save(self, obj, f, *args, **kwargs):
        path = Path(str(f))
        if path.name == self.name and path.parent.name == self.checkpoint:
            path.write_bytes(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(obj, f, *args, **kwargs)


@pytest.mark.parametrize("engine", ["eager", "cuda-graphs"])
def test_a_full_disk_while_writing_a_checkpoint_leaves_no_partial_folder_and_a_resumable_run(project, monkeypatch,
                                                                                             engine):
    use_engine(monkeypatch, engine)
    with monkeypatch.context() as patch:
        FullDiskAt(patch, "checkpoint-40", "training_state.pt")
        result = tk("run", "toy", "--set", "epochs=3", "--set", f"engine={engine}", "--set",
                    "resume_point_seconds=0")
    assert result.exit_code == 1, result.output
    run_dir = next((project / "runs").iterdir())
    last, shown = result.output.strip().splitlines()[-1], run_dir.relative_to(project)  # as --output gave it
    assert last.startswith(f"Error: The disk is full: could not save {shown / 'checkpoints' / 'checkpoint-40'}"), \
        result.output
    assert last.endswith(f"Then resume it: tk run --resume {shown}"), result.output
    assert folders.run_status(run_dir) == "failed"
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["checkpoint-20"]
    assert "Test metrics" in ok("run", "--resume", run_dir)
    assert folders.run_status(run_dir) == "complete"


def test_a_file_size_limit_hit_inside_torch_save_is_a_one_line_error(project):
    """torch.save's own writer reports `ulimit -f` as "[enforce fail at inline_container.cc] unexpected pos"."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (160 * 1024, 160 * 1024)); "
            "sys.argv = ['tk', 'run', 'toy', '--set', 'epochs=2']; "
            "from toolkit.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "unexpected pos" not in out.stderr, out.stderr[-3000:]
    run_dir = next((project / "runs").iterdir())
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: File size limit exceeded: could not save {run_dir.relative_to(project)}"), last
    assert "ulimit -f is 160 KiB" in last and "start it again: tk run toy" in last, last
    assert folders.run_status(run_dir) == "failed"
    assert not (run_dir / "checkpoints").exists() or not list((run_dir / "checkpoints").iterdir())


def test_a_failed_write_of_any_kind_removes_its_staging_folder(tmp_path):
    def half_then_fail(staged):
        (staged / "a.pt").write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0\nframe #0")

    with pytest.raises(TkError, match=r"Could not write the checkpoint .*checkpoint-7: \[enforce fail.*pos 64 vs 0$"):
        checkpoints.write(tmp_path, "checkpoint-7", half_then_fail, {})
    assert list(tmp_path.iterdir()) == []


def test_a_folder_an_engine_wrote_in_place_is_committed_where_it_is(tmp_path):
    """A plugin engine that writes ``checkpoint-STEP`` itself and commits it, as before staging existed."""
    path = tmp_path / "checkpoint-3"
    path.mkdir()
    (path / "state.pt").write_bytes(b"weights")
    assert checkpoints.commit(path, {"best_checkpoint": "checkpoint-3"}) == path
    assert checkpoints.latest(tmp_path) == path
    assert checkpoints.read_state(path)["files"] == {"state.pt": {"bytes": 7, "crc32": zlib.crc32(b"weights")}}
    from toolkit.training import checkpoint_checks

    assert checkpoint_checks.problems(path) == []
    (path / "state.pt").write_bytes(b"weightz")
    assert checkpoint_checks.problems(path) == ["state.pt: its bytes changed since it was written (CRC-32)"]


def test_a_resumed_run_that_loses_its_checkpoints_says_the_command_it_started_with(pm, project, monkeypatch):
    """A resumed task is rebuilt from config.json, which keeps no record of what --set gave; its start-again
    line is the one recorded when the run started, --set epochs=2 included."""
    from toolkit.runs import pipeline
    from toolkit.training.interrupt import RunInterrupted

    stopped = train_toy(pm, project, progress=InterruptAt(STEPS + 5), epochs=2)

    def checkpoints_gone_then_interrupted(*args, **kwargs):
        shutil.rmtree(stopped.run_dir / "checkpoints")
        raise RunInterrupted()

    monkeypatch.setattr(pipeline, "train_and_evaluate", checkpoints_gone_then_interrupted)
    said = []
    outcome = resume_task(pm, stopped.run_dir, Progress(echo=said.append, bar=False))
    assert outcome.status == "interrupted"
    assert said[-1].endswith("Start again: tk run toy --set epochs=2"), said
