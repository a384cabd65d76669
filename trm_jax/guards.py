"""What keeps a command from losing data: output checks, path rules, the work-dir lock, signals.

Every command checks each of its outputs *before* it does any work (``check_output_dir``,
``check_output_file``), keeps path parts read from the command line or from files inside the
folder they were given for (``check_component``, ``inside``), never replaces a directory that is
not one of its own datasets (``check_dataset_out`` and the ``MARKER`` file), holds a lock on the
work dir while training (``WorkdirLock``) and turns SIGINT / SIGTERM into "finish the step, save,
exit" (``StopSignals``). Every failure is a :class:`GuardError` (a ``ValueError``) carrying one
sentence; the commands print it and exit with status 2. Imports nothing heavy.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path

__all__ = [
    "MARKER",
    "CliParser",
    "GuardError",
    "StopSignals",
    "WorkdirLock",
    "check_component",
    "check_memory",
    "check_dataset_out",
    "check_output_dir",
    "check_output_file",
    "inside",
    "looks_like_dataset",
    "write_marker",
]

# A dataset directory written by our builders carries this file; only such a directory may be
# replaced (and only with --overwrite).
MARKER = ".trm_jax_dataset"
LOCK_FILE = ".trm_jax.lock"
_SYSTEM = ("/proc", "/sys", "/dev")


class GuardError(ValueError):
    """An output or path that the command refuses, with one sentence saying why."""


class CliParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def _system_path(p: Path) -> bool:
    s = str(p)
    return any(s == root or s.startswith(root + "/") for root in _SYSTEM)


def _first_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(p: Path, what: str) -> None:
    """``p`` does not exist yet: its nearest existing ancestor must be a writable directory."""
    anc = _first_existing(p.parent)
    if not anc.is_dir():
        raise GuardError(f"{what} {p} cannot be created: {anc} is a file, not a directory.")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise GuardError(f"{what} {p} cannot be created: {anc} is not writable.")


def check_output_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """A directory the command will write into: existing and writable, or creatable."""
    p = Path(os.path.abspath(os.fspath(path)))
    if _system_path(p):
        raise GuardError(f"{what} {path} is under a system directory; choose another path.")
    if p.exists():
        if not p.is_dir():
            raise GuardError(f"{what} {path} is a file, not a directory.")
        if not os.access(p, os.W_OK | os.X_OK):
            raise GuardError(f"{what} {path} is not writable.")
    else:
        _check_creatable(p, what)
    return p


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """A file the command will write: not a directory, in a writable (or creatable) folder."""
    p = Path(os.path.abspath(os.fspath(path)))
    if _system_path(p):
        raise GuardError(f"{what} {path} is under a system directory; choose another path.")
    if p.is_dir():
        raise GuardError(f"{what} {path} is a directory; give a file name.")
    if p.exists():
        if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK | os.X_OK):
            raise GuardError(f"{what} {path} is not writable.")
    else:
        _check_creatable(p, what)
    return p


def check_component(name: str, what: str) -> str:
    """A single path part (a split name, a task id): no separators, no ``..``, not empty."""
    if not isinstance(name, str) or not name.strip():
        raise GuardError(f"{what} must be a non-empty name, got {name!r}.")
    if "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise GuardError(f"{what} {name!r} must be a plain name without '/', '\\' or '..'.")
    return name


def inside(root: str | os.PathLike, relative: str, what: str) -> Path:
    """``root / relative`` for a relative path read from a file, refused if it leaves ``root``."""
    if not isinstance(relative, str) or not relative:
        raise GuardError(f"{what} must be a relative path inside {root}, got {relative!r}.")
    base = Path(os.path.realpath(os.fspath(root)))
    target = Path(os.path.realpath(base / relative))
    if os.path.isabs(relative) or (target != base and base not in target.parents):
        raise GuardError(f"{what} {relative!r} points outside {root}.")
    return target


# Files a dataset of ours may hold at its root besides its split directories (identifiers, ARC
# references, the generated ARC benchmark's Kaggle-format copies).
_DATASET_ROOT_FILES = {
    MARKER,
    "identifiers.json",
    "test_puzzles.json",
    "heldout_challenges.json",
    "heldout_solutions.json",
    "training_challenges.json",
    "training_solutions.json",
}


def _is_leftover(name: str) -> bool:
    """A temporary sibling an interrupted atomic write left (``.<name>.tmp-*`` / ``.old-*``)."""
    return name.startswith(".") and (".tmp-" in name or ".old-" in name)


def looks_like_dataset(p: Path) -> bool:
    """Whether ``p`` holds nothing but a dataset layout of ours: ``identifiers.json``, at least
    one split directory of ``dataset.json`` and ``all__*.npy`` files, and the known root files.

    This is how a dataset written before the ``MARKER`` file existed is recognised; a directory
    holding anything else (a note, a sub-folder of other files) is not a dataset."""
    splits = 0
    for entry in p.iterdir():
        if _is_leftover(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            names = {f.name for f in entry.iterdir()}
            if "dataset.json" not in names or any(
                n != "dataset.json" and not (n.startswith("all__") and n.endswith(".npy"))
                for n in names
            ):
                return False
            splits += 1
        elif entry.name not in _DATASET_ROOT_FILES or not entry.is_file():
            return False
    return splits > 0 and (p / "identifiers.json").is_file()


def check_dataset_out(path: str | os.PathLike, overwrite: bool, what: str = "--out") -> Path:
    """Where a builder may write a dataset: new, an empty directory, or one of our datasets
    (``MARKER``, or the bare layout of one written before the marker, :func:`looks_like_dataset`)
    when ``overwrite``. Never a directory holding anything else."""
    p = check_output_dir(path, what)
    if not p.exists() or not any(p.iterdir()):
        return p
    if not (p / MARKER).is_file() and not looks_like_dataset(p):
        raise GuardError(
            f"{what} {path} exists and is not a trm_jax dataset (no {MARKER}, and it holds "
            "other files); choose a new or empty directory."
        )
    if not overwrite:
        raise GuardError(f"{what} {path} already holds a dataset; pass --overwrite to replace it.")
    return p


def write_marker(root: str | os.PathLike, builder: str) -> None:
    """Mark ``root`` as a dataset written by ``builder`` (so a later build may replace it). The
    content is fixed, so that a build stays byte-for-byte reproducible."""
    from trm_jax.fileio import write_json

    write_json(Path(root) / MARKER, {"builder": builder, "trm_jax_dataset": 1})


def size_text(n: float) -> str:
    """Bytes as a short human size (``1.5 GiB``, ``12.0 MiB``)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def check_memory(asked: int, available: int | None, what: str, change: str) -> None:
    """Refuse ``what`` up front when it needs more than the ``available`` bytes (None: unknown,
    then nothing is refused); ``change`` says what to change."""
    if available and asked > available:
        raise GuardError(
            f"{what} needs at least {size_text(asked)} of memory, more than the "
            f"{size_text(available)} one device has; {change}."
        )


# --------------------------------------------------------------------------------------------
# One run per work dir


class WorkdirLock:
    """An exclusive ``flock`` on ``<workdir>/.trm_jax.lock`` for as long as the run lives.

    The kernel drops the lock when the process dies, however it dies, so a lock left by a
    killed run is stale by construction and the next start takes it over. The file keeps the
    holder's pid so a refused start can name it.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> WorkdirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise GuardError(f"cannot lock {self.path} ({e.strerror}).") from None
            holder = _read_holder(self.path)
            raise GuardError(
                f"work dir {self.path.parent} is in use by another run ({holder}); "
                "wait for it to finish or choose another --workdir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # closing drops the flock
                self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {int(info['pid'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


# --------------------------------------------------------------------------------------------
# Signals


class StopSignals:
    """SIGINT / SIGTERM ask the loop to stop at the next step boundary instead of killing it.

    ``requested`` names the first signal received (None until then); the loop checks it after
    each step, saves and exits with ``exit_code`` (130 for SIGINT, 143 for SIGTERM). A second
    signal while stopping exits at once (``os._exit``): saves are atomic, so the latest complete
    checkpoint stays the latest. Only the main thread can install handlers; elsewhere this does
    nothing.
    """

    CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

    def __init__(self, announce: bool = True):
        self.requested: int | None = None
        self.announce = announce
        self._old: dict = {}

    @property
    def exit_code(self) -> int:
        return self.CODES.get(self.requested, 1)

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""

    def _handle(self, signum, _frame) -> None:
        if self.requested is not None:
            sys.stderr.write(f"\n{signal.Signals(signum).name} again: exiting now.\n")
            sys.stderr.flush()
            os._exit(self.CODES.get(signum, 1))
        self.requested = signum
        if self.announce:
            sys.stderr.write(
                f"\n{signal.Signals(signum).name} received: finishing this step and saving "
                "(send it again to exit at once).\n"
            )
            sys.stderr.flush()

    def __enter__(self) -> StopSignals:
        try:
            for s in self.CODES:
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


# --------------------------------------------------------------------------------------------
# Memory a batch needs


def batch_bytes(model_config, batch_size: int) -> int:
    """A lower bound on the memory one batch of ``batch_size`` puzzles takes: the token arrays
    on the host (inputs, labels, predictions) and, on the device, the ACT carry (two latents)
    plus one net application's widest activation."""
    c = model_config
    seq = c.seq_len + c.puzzle_len
    per_row = 3 * c.seq_len * 4 + seq * c.hidden_size * 4 * (2 + c.expansion)
    return int(batch_size * per_row)


def device_memory() -> int | None:
    """Bytes one device can hold (its memory limit; the machine's RAM for a CPU), or None."""
    import jax  # lazy: guards stays import-light for the command-line checks

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # not every backend reports memory
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_size(model_config, batch_size: int, flag: str = "--batch-size") -> None:
    """Refuse (GuardError, one sentence) a batch that cannot fit in memory, before any work."""
    import jax

    per_device = -(-batch_size // max(1, jax.device_count()))
    check_memory(
        batch_bytes(model_config, per_device),
        device_memory(),
        f"{flag} {batch_size}",
        "choose a smaller batch",
    )
