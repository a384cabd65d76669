"""What the data_gen commands share: the input error, the parser, text and CSV reading, and the
worker pool that generates distinct puzzles in index order.

Imports nothing heavy (no JAX): the builders run on machines without an accelerator.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trm_jax import guards
from trm_jax.progress import Progress

# The public Sudoku-Extreme and Maze-Hard CSV layout.
CSV_HEADER = ["source", "question", "answer", "rating"]


class InputError(ValueError):
    """Bad user input: the message is one sentence naming the input and what was expected."""


class CliParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line on stderr, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def open_text(path: str, what: str):
    """Open a UTF-8 text file (a BOM is skipped) or raise InputError naming it."""
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None


def read_text_input(file: str | None, what: str) -> tuple[str, str]:
    """(name, text) of ``file``, or of stdin when ``file`` is None or '-'; ``what`` names the
    contents in messages ("puzzles", "mazes")."""
    if file in (None, "-"):
        return "<stdin>", sys.stdin.read().removeprefix("\ufeff")
    with open_text(file, f"{what[:-1]} file") as f:
        try:
            return file, f.read()
        except UnicodeDecodeError:
            raise InputError(f"{file}: expected a UTF-8 text file of {what}") from None


def csv_rows(path: str, layout: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row of a CSV with the header ``CSV_HEADER``;
    ``layout`` names the layout in messages ("Sudoku-Extreme"). Raises InputError naming the file
    and line for a wrong header, a row without 4 fields, malformed CSV or a non-UTF-8 file."""
    expected = ",".join(CSV_HEADER)
    with open_text(path, "CSV file") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != CSV_HEADER:
                found = "an empty file" if header is None else ",".join(header)[:80]
                raise InputError(
                    f"{path}: expected the header '{expected}' ({layout} CSV layout), "
                    f"found {found!r}"
                )
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 4:
                    raise InputError(
                        f"{path} line {line}: expected 4 fields ({expected}), got {len(row)}"
                    )
                yield line, row
        except csv.Error as e:
            raise InputError(f"{path} line {reader.line_num}: malformed CSV ({e})") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: expected a UTF-8 text CSV file") from None


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """The ``--overwrite`` flag of every builder (see :func:`check_out`)."""
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it already holds a dataset"
    )


def check_out(out: str, overwrite: bool) -> Path:
    """Refuse ``--out`` before any work unless it is new, empty, or (with ``--overwrite``) one
    of our datasets (:func:`trm_jax.guards.check_dataset_out`); raises InputError."""
    try:
        return guards.check_dataset_out(out, overwrite)
    except guards.GuardError as e:
        raise InputError(str(e).rstrip(".")) from None


@contextlib.contextmanager
def building(out: str | os.PathLike, builder: str) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write a dataset into; on success it gets the dataset
    marker and replaces ``out`` in one rename, on any failure or interrupt it is removed, so
    ``out`` is never half-written. Refuses (again) an ``out`` that is not a dataset of ours."""
    from trm_jax.data import dataset

    target = guards.check_dataset_out(out, overwrite=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = dataset.make_temp_dir(target.parent, target.name)
    try:
        yield tmp
        guards.write_marker(tmp, builder)
        dataset.replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_main(name: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen command; bad input and failed writes print one line
    ("<name> <command>: error: ...") and return 2, an interrupt 130."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"{name} {args.command}: error: {e}.", file=sys.stderr)
        return 2
    except guards.GuardError as e:
        print(f"{name} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # reading errors are InputErrors already: this is a write failing
        where = e.filename or getattr(args, "out", "the output")
        print(f"{name} {args.command}: error: cannot write {where}: {e.strerror}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        kept = f"; {out} is unchanged" if out else ""
        print(f"{name} {args.command}: interrupted, nothing was written{kept}.", file=sys.stderr)
        return 130


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the main process (which stops them): no worker tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _make_pool(workers: int):
    """A forkserver pool whose start-up a Ctrl-C cannot cut in half: a SIGINT that arrives while
    the server and workers start is held until the pool exists, which is then stopped before the
    KeyboardInterrupt is raised (a half-built pool can keep the interpreter from exiting)."""
    ctx = multiprocessing.get_context("forkserver")
    if threading.current_thread() is not threading.main_thread():
        return ctx.Pool(workers, initializer=_ignore_sigint)
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    # Blocked, not only caught: the forkserver and its workers inherit the mask, so a Ctrl-C
    # sent to the process group cannot kill the server half-way through its start either.
    blocking = hasattr(signal, "pthread_sigmask")
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if blocking else None
    try:
        pool = ctx.Pool(workers, initializer=_ignore_sigint)
    finally:
        if blocking:  # a SIGINT held meanwhile reaches the handler above before this returns
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)
    if held:
        pool.terminate()
        pool.join()
        raise KeyboardInterrupt
    return pool


def _generate_task(args: tuple[Callable, int, int, Any]) -> tuple | str:
    generate_one, seed, index, spec = args
    try:
        return generate_one(seed, index, spec)
    except RuntimeError as e:
        return str(e)


def generate_many(
    generate_one: Callable[[int, int, Any], tuple],
    seed: int,
    count: int,
    spec: Any,
    workers: int = 1,
    quiet: bool = False,
    *,
    what: str,
    hint: str,
) -> tuple[list[tuple], int]:
    """``count`` distinct records ``generate_one(seed, i, spec)`` in index order.

    Record i comes from its own random stream (seed, i), duplicates (equal first fields) are
    replaced by the next unused indices, so the result does not depend on ``workers``
    (``generate_one`` must be a module-level function, for the worker processes). Returns
    (records, number of indices used). A RuntimeError of ``generate_one`` becomes an InputError
    ending with ``hint``. Progress ("<what>: generated ...") goes to stderr unless ``quiet``.
    """
    out: list[tuple] = []
    seen: set = set()
    next_index = 0
    progress = Progress(f"{what}: generated", count, enabled=not quiet, every=2.0)
    pool = _make_pool(workers) if workers > 1 else None
    try:
        while len(out) < count:
            need = count - len(out)
            tasks = [(generate_one, seed, i, spec) for i in range(next_index, next_index + need)]
            next_index += need
            if pool is None:
                results = map(_generate_task, tasks)
            else:
                chunk = max(1, min(32, need // (4 * workers)))
                results = pool.imap(_generate_task, tasks, chunksize=chunk)
            for rec in results:
                if isinstance(rec, str):
                    raise InputError(f"{rec}; {hint}")
                if rec[0] not in seen:
                    seen.add(rec[0])
                    out.append(rec)
                    progress.update(len(out))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    progress.update(len(out), force=True)
    progress.close()
    return out, next_index
