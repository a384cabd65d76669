"""A CPU-sized ARC-like benchmark from reasoning-gym's RE-ARC generators, on a small canvas.

Usage (needs the ``arc`` extra: ``pip install 'trm_jax[arc]'``, i.e. reasoning-gym==0.1.25)::

    python -m data_gen.arc build-generated --out data/arc-gen8 --seed 0 \\
        [--canvas 8] [--tasks ID ...] [--heldout ID ...] [--demos 64] [--chunk 8] \\
        [--heldout-demos 4] [--test-inputs 2] [--num-aug 7] [--difficulty 0.2]

RE-ARC (Hodel, 2024; shipped in reasoning-gym as ``reasoning_gym.arc.rearc_utils``) has one
procedural generator per ARC-AGI-1 training task: ``generator(rng, diff_lb, diff_ub)`` draws one
(input, output) pair of that task, where the difficulty in [diff_lb, diff_ub] scales the sampled
quantities (grid sides drawn from (1, 30) come out at most ``1 + 29 * diff_ub``). Each task here
is a fresh draw of such pairs: ``--demos`` demonstration pairs plus ``--test-inputs`` test pairs
for a training task, ``--heldout-demos`` plus ``--test-inputs`` for a held-out task. A pair is kept
when both grids fit the ``--canvas`` and differ from each other and its input differs from the
task's other inputs; a generator that cannot fill a task in ``50 x pairs`` draws stops the build.
``--chunk N`` cuts a training task's pairs into groups of N (each group the sampler's unit: it
takes one version of one group, all its pairs), all under the task's one set of augmented
versions and embedding rows; with every pair in one group a batch would hold one or two tasks.

Layout of ``--out``:

- the dataset (``train/``, ``test/``, ``identifiers.json``, ``test_puzzles.json``) as
  ``python -m data_gen.arc build`` writes it (``data_gen.arc.write_dataset``), from the training
  tasks only: their demonstration pairs (with ``--num-aug`` augmented versions each) form
  ``train``, their test pairs (in every version, for voting) form ``test``, so evaluating a run
  reports pass@2 on the training tasks' test inputs; ``canvas_side`` in dataset.json;
- ``heldout_challenges.json`` / ``heldout_solutions.json``: the held-out tasks in the Kaggle
  layout (``{id: {"train": [{"input", "output"}...], "test": [{"input"}...]}}`` and
  ``{id: [output, ...]}``); none of their pairs is in the dataset, so their puzzle embeddings are
  untrained -- the material for test-time adaptation;
- ``training_challenges.json`` / ``training_solutions.json``: the training tasks, same layout.

dataset.json records, under ``arc_build``, the seed, the reasoning-gym version, the task lists and
every setting above; the same seed and library version give byte-identical files. Task ids are the
ARC-AGI-1 ids of the generators (the default lists: :data:`DEFAULT_TASKS`, :data:`DEFAULT_HELDOUT`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from data_gen import arc
from trm_jax.data import dataset as ds
from trm_jax.data import tokens as tok

PINNED_VERSION = "0.1.25"
INSTALL_HINT = (
    "build-generated needs the reasoning-gym package; install the arc extra with "
    f"`pip install 'trm_jax[arc]'` (or `pip install reasoning-gym=={PINNED_VERSION}`)."
)
SUBSET = "generated"
ATTEMPTS_PER_PAIR = 50

# RE-ARC task id -> rule, for every task the benchmark has used. Training candidates: short
# deterministic rules -- whole-grid geometry, colour maps, gravity/shifts, local stamps and
# fills, and a few size changes (tiling, mirroring, scaling, halving).
RULES = {
    "67a3c6ac": "flip left-right",
    "3c9b0459": "rotate 180 degrees",
    "74dd1130": "transpose",
    "c8f0f002": "recolour one colour (7 -> 5)",
    "0d3d703e": "fixed colour permutation",
    "d511f180": "swap two colours (5 <-> 8)",
    "5582e5ca": "fill with the most common colour",
    "f76d97a5": "swap a colour with 5 and 5 with the background",
    "1e0a9b12": "gravity: cells fall to the bottom",
    "25ff71a9": "shift the shape down one row",
    "d037b0a7": "extend colours downward",
    "a699fb00": "fill the gap between horizontal pairs",
    "3aa6fb7a": "complete L-shaped corners",
    "6f8cd79b": "draw a border",
    "4258a5f9": "surround cells of 5 with 1",
    "ce22a75a": "grow cells into 3x3 squares",
    "a5f85a15": "recolour every second cell of diagonals",
    "25d8a9c8": "uniform rows -> 5, others -> 0",
    "aabf363d": "recolour the shape with the corner colour",
    "67385a82": "recolour shapes of more than one cell to 8",
    "9565186b": "recolour every cell not of the majority colour to 5",
    "f25ffba3": "mirror the bottom half upward",
    "ea786f4a": "draw the diagonals through the centre",
    "a416b8f3": "tile twice horizontally",
    "c9e6f938": "append the left-right mirror",
    "6fa7a44f": "append the up-down mirror",
    "3af2c5a8": "mirror into four quadrants",
    "c59eb873": "upscale by 2",
    "7b7f7511": "keep one half of a doubled grid",
    "d10ecb37": "keep the top-left 2x2",
    # held-out relatives of the rules above
    "68b16354": "flip up-down",
    "ed36ccf7": "rotate 90 degrees",
    "b1948b0a": "recolour one colour (6 -> 2)",
    "a79310a0": "shift down one row and recolour to 2",
    "dc1df850": "surround cells of 2 with 1",
    "0ca9ddb6": "stamp colour-specific patterns around cells",
    "4c4377d9": "prepend the up-down mirror",
    "9172f3a0": "upscale by 3",
}
# The default benchmark (docs/arc-adaptation.md, section 9): the 7 same-size rules that a TRM on
# 2 CPU cores is measured to learn in about 15 minutes when each has 64 pairs (in chunks of 8) on
# an 8x8 canvas -- colour-level rules (fixed colour maps, per-pair colour swaps, majority fill)
# and a one-row shift -- and 4 held-out relatives (another recolouring, another per-pair
# recolouring, a shift with a recolouring, a shape recoloured with a corner's colour), so that
# adaptation has something to transfer. Spatial rules (flips, rotations, gravity, stamps, fills:
# the session-5 default, rebuilt with --tasks/--heldout as section 8 says) stayed at 0 in every
# CPU variant measured.
DEFAULT_TASKS = (
    "c8f0f002",
    "d511f180",
    "0d3d703e",
    "67385a82",
    "f76d97a5",
    "5582e5ca",
    "25ff71a9",
)
DEFAULT_HELDOUT = ("b1948b0a", "9565186b", "a79310a0", "aabf363d")
DEFAULT_CANVAS = 8
DEFAULT_DEMOS = 64
DEFAULT_CHUNK = 8
DEFAULT_NUM_AUG = 7


def _library() -> tuple[dict[str, Callable], str]:
    """RE-ARC generators by task id, and the installed reasoning-gym version."""
    try:
        from reasoning_gym.arc.rearc_utils import generators  # noqa: PLC0415 (optional extra)
        from reasoning_gym.arc.rearc_utils.utils import get_generators  # noqa: PLC0415
    except ImportError:
        raise arc.BuildError(INSTALL_HINT) from None
    return get_generators(generators), importlib.metadata.version("reasoning-gym")


def _task_rng(seed: int, task_id: str, role: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{role}\x00{task_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def generate_task(
    generator: Callable,
    task_id: str,
    n_pairs: int,
    rng: random.Random,
    canvas: int,
    difficulty: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_pairs`` distinct (input, output) uint8 pairs of one task that fit the canvas."""
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    inputs_seen: set[bytes] = set()
    for _ in range(ATTEMPTS_PER_PAIR * n_pairs):
        if len(pairs) == n_pairs:
            break
        try:
            ex = generator(rng, 0.0, difficulty)
        except Exception:  # noqa: BLE001 (a third-party generator's failed draw: draw again)
            continue
        try:
            x = tok.check_arc_grid(ex["input"], "input", side=canvas)
            y = tok.check_arc_grid(ex["output"], "output", side=canvas)
        except ValueError:
            continue
        key = arc._grid_bytes(x)
        if key in inputs_seen or (x.shape == y.shape and np.array_equal(x, y)):
            continue
        inputs_seen.add(key)
        pairs.append((x, y))
    if len(pairs) < n_pairs:
        raise arc.BuildError(
            f"RE-ARC task {task_id} gave only {len(pairs)} of {n_pairs} distinct pairs fitting the "
            f"{canvas}x{canvas} canvas in {ATTEMPTS_PER_PAIR * n_pairs} draws; raise --canvas or "
            "--difficulty, or choose another task."
        )
    return pairs


def _kaggle(puzzles: dict[str, arc.ArcPuzzle]) -> tuple[dict, dict]:
    challenges = {
        pid: {
            "train": [{"input": x.tolist(), "output": y.tolist()} for x, y in p.train],
            "test": [{"input": x.tolist()} for x, _ in p.test],
        }
        for pid, p in puzzles.items()
    }
    solutions = {pid: [y.tolist() for _, y in p.test] for pid, p in puzzles.items()}
    return challenges, solutions


def build_generated(
    out: str | Path,
    *,
    seed: int = 0,
    canvas: int = DEFAULT_CANVAS,
    tasks: Sequence[str] | None = None,
    heldout: Sequence[str] | None = None,
    demos: int = DEFAULT_DEMOS,
    heldout_demos: int = 4,
    test_inputs: int = 2,
    heldout_test_inputs: int | None = None,
    num_aug: int = DEFAULT_NUM_AUG,
    difficulty: float = 0.2,
    chunk: int = DEFAULT_CHUNK,
    log: Callable[[str], None] = print,
) -> dict:
    """Generates the benchmark into ``out`` (replaced atomically); returns a summary dict."""
    tasks = list(DEFAULT_TASKS if tasks is None else tasks)
    heldout = list(DEFAULT_HELDOUT if heldout is None else heldout)
    n_heldout_test = test_inputs if heldout_test_inputs is None else heldout_test_inputs
    arc.check_build_args(num_aug, canvas)
    for name, v, lo in (
        ("--demos", demos, 1),
        ("--heldout-demos", heldout_demos, 1),
        ("--test-inputs", test_inputs, 1),
        ("--heldout-test-inputs", n_heldout_test, 1),
    ):
        if v < lo:
            raise arc.BuildError(f"{name} must be >= {lo}, got {v}.")
    if chunk < 0:
        raise arc.BuildError(f"--chunk must be >= 0 (0: all demonstrations together), got {chunk}.")
    if not 0.0 < difficulty <= 1.0:
        raise arc.BuildError(f"--difficulty must be in (0, 1], got {difficulty}.")
    if not tasks:
        raise arc.BuildError("expected at least one training task (--tasks).")
    both = sorted(set(tasks) & set(heldout))
    dupes = sorted({t for t in tasks + heldout if (tasks + heldout).count(t) > 1})
    if both or dupes:
        raise arc.BuildError(f"task ids must be distinct and in one list only; repeated: {dupes}.")
    generators, version = _library()
    unknown = [t for t in tasks + heldout if t not in generators]
    if unknown:
        raise arc.BuildError(
            f"RE-ARC has no generator for task id(s) {unknown} (ids are ARC-AGI-1 training ids)."
        )
    if version != PINNED_VERSION:
        log(
            f"[arc-gen] warning: reasoning-gym {version} is installed; the benchmark is pinned "
            f"to {PINNED_VERSION}, so a build may differ."
        )

    def make(task_ids: list[str], role: str, n_demo: int, n_test: int) -> dict[str, arc.ArcPuzzle]:
        puzzles = {}
        for t in task_ids:
            pairs = generate_task(
                generators[t], t, n_demo + n_test, _task_rng(seed, t, role), canvas, difficulty
            )
            puzzles[t] = arc.ArcPuzzle(
                pid=t, subset=SUBSET, train=pairs[:n_demo], test=pairs[n_demo:]
            )
        return puzzles

    train_tasks = make(tasks, "train", demos, test_inputs)
    heldout_tasks = make(heldout, "heldout", heldout_demos, n_heldout_test)
    # The dataset's training puzzles: each task whole, or cut into chunks of `chunk` pairs, each
    # its own group (the sampler takes one group's pairs together) under the task's one set of
    # versions and embedding rows; the test inputs stay with the first chunk.
    dataset_tasks = dict(train_tasks)
    if chunk:
        dataset_tasks = {}
        for t, p in train_tasks.items():
            for k in range(0, len(p.train), chunk):
                key = t if k == 0 else f"{t}#{k // chunk}"
                dataset_tasks[key] = arc.ArcPuzzle(
                    pid=t,
                    subset=SUBSET,
                    train=p.train[k : k + chunk],
                    test=p.test if k == 0 else [],
                )
    log(f"[arc-gen] generated {len(train_tasks)} training and {len(heldout_tasks)} held-out tasks")
    h_chal, h_sol = _kaggle(heldout_tasks)
    t_chal, t_sol = _kaggle(train_tasks)
    build_info = {
        "source": "reasoning-gym rearc",
        "library": "reasoning-gym",
        "library_version": version,
        "seed": seed,
        "canvas": canvas,
        "difficulty": [0.0, difficulty],
        "demos": demos,
        "heldout_demos": heldout_demos,
        "test_inputs": test_inputs,
        "num_aug": num_aug,
        "tasks": tasks,
        "heldout": heldout,
        "subsets": [SUBSET],
        "test_set": SUBSET,
        "materialized": False,
    }
    if chunk:
        build_info["chunk"] = chunk
    if n_heldout_test != test_inputs:
        build_info["heldout_test_inputs"] = n_heldout_test
    summary = arc.write_dataset(
        out,
        {SUBSET: dataset_tasks},
        test_set=SUBSET,
        num_aug=num_aug,
        seed=seed,
        canvas=canvas,
        build_info=build_info,
        extra_files={
            "heldout_challenges.json": h_chal,
            "heldout_solutions.json": h_sol,
            "training_challenges.json": t_chal,
            "training_solutions.json": t_sol,
        },
        log=log,
    )
    summary["heldout"] = len(heldout_tasks)
    return summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``build-generated`` subcommand of ``python -m data_gen.arc``."""
    g = sub.add_parser(
        "build-generated",
        help="build a small-canvas ARC-like benchmark from RE-ARC generators (reasoning-gym)",
    )
    g.add_argument("--out", required=True, help="output dataset directory")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--canvas", type=int, default=DEFAULT_CANVAS, help="canvas side S (S*S tokens)")
    g.add_argument("--tasks", nargs="+", default=None, help="training task ids (RE-ARC)")
    g.add_argument("--heldout", nargs="*", default=None, help="held-out task ids (RE-ARC)")
    g.add_argument(
        "--demos", type=int, default=DEFAULT_DEMOS, help="demonstration pairs per training task"
    )
    g.add_argument("--heldout-demos", type=int, default=4, help="pairs per held-out task")
    g.add_argument("--test-inputs", type=int, default=2, help="test pairs per training task")
    g.add_argument(
        "--heldout-test-inputs",
        type=int,
        default=None,
        help="test pairs per held-out task (default: --test-inputs)",
    )
    g.add_argument(
        "--num-aug", type=int, default=DEFAULT_NUM_AUG, help="augmented versions per training task"
    )
    g.add_argument(
        "--difficulty", type=float, default=0.2, help="RE-ARC difficulty upper bound (0, 1]"
    )
    g.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        help="cut each training task's pairs into groups of N (0: one group per task)",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="replace --out if it already holds a dataset"
    )


def run(args: argparse.Namespace) -> int:
    try:
        build_generated(
            args.out,
            seed=args.seed,
            canvas=args.canvas,
            tasks=args.tasks,
            heldout=args.heldout,
            demos=args.demos,
            heldout_demos=args.heldout_demos,
            test_inputs=args.test_inputs,
            heldout_test_inputs=args.heldout_test_inputs,
            num_aug=args.num_aug,
            difficulty=args.difficulty,
            chunk=args.chunk,
        )
    except (arc.BuildError, ds.DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
