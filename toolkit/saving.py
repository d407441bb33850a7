"""Saving files whole or not at all: every write goes to a temporary file in the same folder, is fsynced,
then renamed into place; a full disk, a file-size limit or a refused write becomes one line that names
the file and the fix. Run folders, checkpoints, histograms and reports all save through here."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from toolkit.errors import TkError


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it into place."""
    try:
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException as error:  # a Ctrl-C mid-write leaves no temporary file either
        _cleanup(locals().get("handle"))
        if isinstance(error, OSError):
            raise saving_error(path, error) from None
        raise


def create_json(path: Path, data: Any) -> Path:
    """Write ``data`` to a new file, never over another: ``path``, else ``NAME-2.json``, ``NAME-3.json``...
    The whole file is written under a temporary name, then hard-linked to the first free name (a link fails
    where the name exists, atomically), so two processes saving at once keep both files."""
    text = json.dumps(safe_json(data), indent=2, default=str, allow_nan=False) + "\n"
    handle = None
    try:
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        for attempt in range(1, 10_000):
            candidate = path if attempt == 1 else path.with_name(f"{path.stem}-{attempt}{path.suffix}")
            try:
                os.link(handle.name, candidate)
                return candidate
            except FileExistsError:
                continue
        raise TkError(f"Too many files named {path.stem}-N{path.suffix} in {path.parent}.")
    except OSError as error:
        raise saving_error(path, error) from None
    finally:
        _cleanup(handle)


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (RFC 8259): NaN and infinities are written as null, so every parser reads the file."""
    write_text(path, json.dumps(safe_json(data), indent=2, default=str, allow_nan=False) + "\n")


def safe_json(data: Any) -> Any:
    """``data`` with every non-finite float (Python or numpy, at any depth) replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: safe_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [safe_json(value) for value in data]
    if type(data).__module__ == "numpy" and hasattr(data, "tolist"):  # numpy scalars and arrays
        return safe_json(data.tolist())
    return data


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TkError(f"{path} does not exist: is {path.parent} a tk run folder?") from None
    except (OSError, json.JSONDecodeError) as error:
        raise TkError(f"{path}: cannot read it ({error}).") from None


WRITTEN_BY = "tk"  # the PNG 'Software' and HTML 'generator' tk writes: only such a file may be written over


def save_png(fig: Any, path: Path) -> None:
    """Render a matplotlib figure and write it atomically."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": WRITTEN_BY})
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def saving_error(path: Path, error: OSError) -> TkError:
    if error.errno == errno.ENOSPC:
        return TkError(f"The disk is full: could not save {path}. Free some space; earlier files are intact "
                       "and the run is marked failed.")
    if error.errno == errno.EFBIG:
        return TkError(f"File size limit exceeded: could not save {path} (ulimit -f is {_file_size_limit()}). "
                       "Raise it, e.g. ulimit -f unlimited; earlier files are intact and the run is marked failed.")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TkError(f"Cannot write {path}: {error.strerror}. Pass --output DIR with a folder you can write.")
    return TkError(f"Could not save {path}: {error.strerror or error}.")


SAVING = ("The disk is full", "File size limit exceeded")  # how saving_error's messages for FULL start
_RUST_OS_ERROR = re.compile(r"os error (\d+)|Os \{ code: (\d+)")
FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind an exception, if any: in its chain, or in the text of an error from a Rust
    library (safetensors writes "I/O error: No space left on device (os error 28)")."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return None
    match = _RUST_OS_ERROR.search(str(error))
    if match:
        code = int(match.group(1) or match.group(2))
        return OSError(code, os.strerror(code))
    if "No space left on device" in str(error):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def _file_size_limit() -> str:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cleanup(handle: Any) -> None:
    if handle is not None:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
