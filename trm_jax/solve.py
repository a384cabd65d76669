"""python -m trm_jax.solve --workdir DIR | --checkpoint PATH  --sudoku "<81 chars>" | ...

Solves puzzles with a trained checkpoint and shows how the answer was refined:

    --sudoku "<81 chars>"   one Sudoku ('.' or '0' blank)
    --file F               one puzzle per line (Sudoku: 81 characters; maze: 900)
    --maze FILE            a maze as text: 30 lines of 30 characters over '#', ' ', 'S', 'G'
    --arc-task FILE.json   a Kaggle ARC task ({"train": [...], "test": [...]}, or a file of
                           {task_id: task}); its test inputs are solved

``--halting fixed`` (default, the reference) answers with the last of the ``halt_max_steps``
supervision steps; ``--halting adaptive`` with the first step at which the training halting rule
fires (``q_halt > 0``, or ``q_halt > q_continue`` for HRM), as ``trm_jax.evaluate`` does. The
answer is printed as a grid; for Sudoku with whether it is a valid solution that keeps the
givens, for mazes whether it marks a shortest S-G path, for ARC whether it equals the task's
expected output when the file has one. ``--trace`` prints the decoded prediction and q_halt after
each step; ``--png FILE`` draws them as a strip of grids (``FILE`` gets ``_<i>`` before its
extension when there are several puzzles).

Test-time settings (``--steps --samples --sigma --select --verify --seed``, as in
``trm_jax.evaluate``) answer through :func:`trm_jax.batching.solve_many`; ``--verify`` prints the
first trajectory that passes the rule check apart from the model's answer.

ARC: the puzzle embedding of a task is looked up by its id in the run's ``identifiers.json``; a
task not seen in training gets the blank row 0, with a warning (expect a poor answer), unless
``--adapt [STEPS]`` first adapts the run to the task's demonstrations (``trm_jax.adapt``).
Puzzles run in batches of ``--batch-size`` (default: the number of puzzles, at most the run's
evaluation batch); with the same batch size the answers equal those ``trm_jax.evaluate`` scores.

Bad input (a malformed or contradictory puzzle, a missing or foreign checkpoint, a puzzle of
another kind than the checkpoint's) stops with one sentence and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from trm_jax import checkpoint as ckpt
from trm_jax import guards, tasks
from trm_jax import test_time as tt
from trm_jax.checkpoint import CheckpointError
from trm_jax.tasks import PuzzleError


class InputError(ValueError):
    """Bad user input (one sentence naming the input)."""


@dataclasses.dataclass
class Puzzle:
    label: str  # names the input in messages ("--sudoku", "F line 3", "task.json test 1")
    value: object  # what TRM.encode takes
    name: str | None = None  # ARC task id (puzzle embedding)
    expected: np.ndarray | None = None  # known answer (ARC test output)


def build_parser() -> argparse.ArgumentParser:
    p = guards.CliParser(
        prog="python -m trm_jax.solve",
        description="Solve puzzles with a trained TRM and show the refinement.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", help="training work dir (latest checkpoint unless --step)")
    where.add_argument("--checkpoint", help="a checkpoint directory .../checkpoints/<N>")
    p.add_argument("--step", type=int, default=None, help="checkpoint step in --workdir")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--sudoku", help="an 81-character Sudoku ('.' or '0' for blanks)")
    what.add_argument("--file", help="puzzles, one per line")
    what.add_argument("--maze", help="a maze text file (30 lines of '#', ' ', 'S', 'G')")
    what.add_argument("--arc-task", help="a Kaggle ARC task JSON file")
    p.add_argument("--halting", choices=("fixed", "adaptive"), default="fixed")
    p.add_argument("--trace", action="store_true", help="print every supervision step")
    p.add_argument("--png", default=None, help="draw the refinement strip to this PNG")
    p.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use the EMA weights (default: when the run trained with train.ema)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="puzzles per compiled batch")
    tt.add_settings_arguments(p)  # test-time compute: non-default settings solve via batching
    p.add_argument(
        "--adapt",
        type=int,
        nargs="?",
        const=100,
        default=None,
        metavar="STEPS",
        help="ARC: first adapt the run to the task (trm_jax.adapt --mode full, STEPS steps, "
        "default 100) in a temporary work dir, then solve with it",
    )
    return p


# --------------------------------------------------------------------------------------------
# Reading inputs (validated before any weights are loaded)


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark is not a cell
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist.") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory, not a file.") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not a UTF-8 text file.") from None


def _arc_tasks(path: str) -> list[tuple[str, dict]]:
    text = _read_text(path, "ARC task file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    if isinstance(data, dict) and "test" in data:
        return [(Path(path).stem, data)]
    if (
        isinstance(data, dict)
        and data
        and all(isinstance(v, dict) and "test" in v for v in data.values())
    ):
        return list(data.items())
    raise InputError(
        f'{path} is not a Kaggle ARC task: expected {{"train": [...], "test": [...]}} or '
        "{task_id: task}."
    )


def read_puzzles(args: argparse.Namespace, task: str | None) -> tuple[str, list[Puzzle]]:
    """(puzzle kind, puzzles) from the command line."""
    if args.sudoku is not None:
        return "sudoku", [Puzzle("--sudoku", args.sudoku)]
    if args.maze is not None:
        return "maze", [Puzzle(f"--maze {args.maze}", _read_text(args.maze, "maze file"))]
    if args.arc_task is not None:
        puzzles = []
        for tid, t in _arc_tasks(args.arc_task):
            tests = t.get("test")
            if not isinstance(tests, list) or not tests:
                raise InputError(f"{args.arc_task}: task {tid} has no test inputs.")
            for i, pair in enumerate(tests, 1):
                label = f"{args.arc_task} task {tid} test {i}"
                if not isinstance(pair, dict) or "input" not in pair:
                    raise InputError(f"{label} has no 'input' grid.")
                expected = pair.get("output")
                if expected is not None:
                    try:
                        expected = tasks.ARC.check_grid(expected, "expected output")
                    except ValueError as e:
                        raise InputError(f"{label}: {e}") from None
                puzzles.append(Puzzle(label, pair["input"], tid, expected))
        return "arc", puzzles
    text = _read_text(args.file, "puzzle file")
    lines = [(n, line.rstrip("\r\n")) for n, line in enumerate(text.splitlines(), 1)]
    puzzles = [Puzzle(f"{args.file} line {n}", s) for n, s in lines if s.strip()]
    if not puzzles:
        raise InputError(f"puzzle file {args.file} holds no puzzles.")
    if task not in tasks.NAMES or not tasks.named(task).one_per_line:
        raise InputError(
            "--file takes Sudoku or maze puzzles, one per line; use --arc-task for ARC tasks."
        )
    return task, puzzles


# --------------------------------------------------------------------------------------------
# Printing


def _png_path(base: str, i: int, n: int) -> str:
    if n == 1:
        return base
    root, ext = os.path.splitext(base)
    return f"{root}_{i}{ext or '.png'}"


# --------------------------------------------------------------------------------------------
# Main


def run(args: argparse.Namespace) -> int:
    from trm_jax import inference as inf

    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}.")
    settings = tt.settings_from_args(args)
    if not settings.is_default and (args.halting != "fixed" or args.trace or args.png):
        raise InputError(
            "--halting adaptive, --trace and --png show the reference's rollout; with test-time "
            "settings use --select first_halt and no trace."
        )
    where, step = args.workdir or args.checkpoint, args.step
    if args.adapt is not None:
        from trm_jax import adapt

        if args.arc_task is None:
            raise InputError("--adapt needs --arc-task.")
        try:
            where, step = adapt.adapt_for_solve(where, args.arc_task, args.adapt, step), None
        except adapt.AdaptError as e:
            raise InputError(str(e)) from None
        print(f"adapted run: {where}", file=sys.stderr)
    info = ckpt.locate(where, step)
    task, puzzles = read_puzzles(args, info.task)
    settings.for_task(task)
    # Check each puzzle on its own terms first, then that it fits the checkpoint.
    record = tasks.named(task, info.model_config.seq_len if info.task == task else None)
    tokens = []
    for p in puzzles:
        try:
            tokens.append(record.parse(p.value).astype(np.int32))
        except ValueError as e:
            raise InputError(f"{p.label}: {e}") from None
    if info.task != task:
        raise InputError(inf.mismatch_message(info, task, puzzles[0].label))
    # Outputs before any work: a PNG that cannot be written must not fail after the answers.
    for i in range(len(puzzles)) if args.png else ():
        guards.check_output_file(_png_path(args.png, i + 1, len(puzzles)), "--png")
    if args.batch_size is not None:
        guards.check_batch_size(info.model_config, args.batch_size)

    trm = inf.load(info, ema=args.ema)
    ids, warned = [], set()
    for p in puzzles:
        row, warning = trm.puzzle_id(p.name)
        if warning and p.name not in warned:
            warned.add(p.name)
            print(f"warning: {warning}", file=sys.stderr)
        ids.append(row)
    eval_batch = int(
        trm.config.data.get("eval_global_batch_size", 0) or trm.config.data.get("global_batch_size")
    )
    batch_size = args.batch_size or min(len(puzzles), max(eval_batch, 1))
    if not settings.is_default:
        return _solve_with_settings(trm, record, puzzles, tokens, ids, settings, batch_size)
    preds, q, qc = trm.solve_tokens(np.stack(tokens), np.asarray(ids), batch_size)
    halts = inf.halt_steps(trm.halts(q, qc), args.halting)
    N = trm.model_config.halt_max_steps
    print(f"{trm!r}, halting {args.halting}")
    for i, p in enumerate(puzzles):
        puzzle_grid = record.decode(tokens[i])
        frames = [record.decode(x) for x in preds[:, i]]
        k = int(halts[i])
        answer = frames[k - 1]
        qk = float(q[k - 1, i])
        print()
        print(
            f"{p.label}: answer from step {k} of {N} (q_halt {qk:+.2f}, "
            f"halt probability {1 / (1 + np.exp(-qk)):.3f})"
        )
        print("\n".join(record.format_answer(puzzle_grid, answer)))
        verdict = record.verdict(puzzle_grid, answer, p.expected)
        if verdict:
            print(verdict)
        if args.trace:
            for s, frame in enumerate(frames, 1):
                qs = float(q[s - 1, i])
                prev = puzzle_grid if s == 1 else frames[s - 2]
                same_shape = np.shape(prev) == np.shape(frame)
                n_changed = int((prev != frame).sum()) if same_shape else "all"
                print(
                    f"  step {s}: q_halt {qs:+.3f} (sigmoid {1 / (1 + np.exp(-qs)):.3f}), "
                    f"{n_changed} cells changed" + ("  <- answer" if s == k else "")
                )
                print("\n".join("    " + r for r in record.format_step(frame)))
        if args.png:
            from trm_jax import viz

            trace = inf.Trace(puzzle_grid, frames, q[:, i], k)
            title = f"{record.title} {p.label}, checkpoint step {trm.step}, {args.halting} halting"
            out = viz.save_refinement(
                _png_path(args.png, i + 1, len(puzzles)), trace, task, title=title
            )
            print(f"refinement strip: {out}")
    return 0


def _solve_with_settings(trm, record, puzzles, tokens, ids, settings, batch_size) -> int:
    """Every puzzle under test-time ``settings`` (:func:`trm_jax.batching.solve_many`, continuous
    batching with ``first_halt``): the selected answer, then, with ``--verify``, the first
    trajectory that passes the rule check, printed apart; and what it cost."""
    from trm_jax import batching

    check = tt.answer_check(trm.task) if settings.verify else None
    x, i = np.stack(tokens), np.asarray(ids)
    sol = batching.solve_many(
        trm.model, trm.variables, trm.puzzle_table, x, i, settings, batch_size=batch_size,
        continuous=settings.stops_early, check=check,
    )  # fmt: skip
    choice, N = sol.choices[settings.select], settings.num_steps(trm.model_config)
    print(f"{trm!r}, {settings.label(trm.model_config)}")
    for b, p in enumerate(puzzles):
        puzzle_grid, answer = record.decode(tokens[b]), record.decode(choice.answer[b])
        print()
        print(
            f"{p.label}: answer from step {int(choice.step[b])} of trajectory "
            f"{int(choice.trajectory[b]) + 1}/{settings.samples} (q_halt "
            f"{float(choice.q_halt[b]):+.2f}; ran {int(sol.steps[b])} of {N} steps)"
        )
        print("\n".join(record.format_answer(puzzle_grid, answer)))
        verdict = record.verdict(puzzle_grid, answer, p.expected)
        if verdict:
            print(verdict)
        if sol.verified is not None:
            verified, which = sol.verified[settings.select]
            if which[b] < 0:
                print("verify: no trajectory passes the rule check; the answer above stands.")
            else:
                print(f"verify: trajectory {int(which[b]) + 1} passes the rule check:")
                print("\n".join(record.format_answer(puzzle_grid, record.decode(verified[b]))))
    print(
        f"\n{sol.num_puzzles} puzzles in {sol.seconds:.2f} s, compile included "
        f"({sol.puzzles_per_second:.2f} puzzles/s), "
        f"{sol.net_applications_per_puzzle:.0f} net applications per puzzle"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (InputError, CheckpointError, PuzzleError, guards.GuardError, tt.SettingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
