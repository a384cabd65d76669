"""Atomic file writes: the one place a JSON, text or ``.npz`` file is written all-or-nothing.

Each writer goes to a temporary sibling (``.<name>.tmp-XXXX``), flushes it to disk and renames it
over the target, so a reader, a crash or a signal never sees half a file. Imports nothing heavy:
``data_gen`` and the command-line tools use it without pulling in JAX.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes", "write_json", "write_npz", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` (parents created), with ordinary permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Atomically write ``obj`` as JSON (keys sorted when indented, for readable diffs)."""
    write_text(path, json.dumps(obj, indent=indent, sort_keys=indent is not None))


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    """Atomically write a compressed ``.npz`` of ``arrays``."""
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())
