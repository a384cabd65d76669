"""Throughput of the augmented train pipelines (examples/s), printed as JSON and as a table.

    .venv/bin/python scripts/bench_data.py [--batches 40] [--global-batch-size 768] [--out FILE]

Builds small datasets in a temporary directory: ARC from the Kaggle JSON (first
``--arc-puzzles`` puzzles of each subset, ``--arc-num-aug`` versions, on the fly and materialised),
and synthetic Sudoku (valid solved grids, ``{"kind": "sudoku"}``) and Maze (30x30,
``{"kind": "dihedral"}``) datasets. Each pipeline runs in this thread without prefetch, so the
figure is what one core sustains. Targets on the 2-core dev machine: ARC >= 10,000/s,
Sudoku >= 50,000/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_gen import arc as arc_builder  # noqa: E402
from trm_jax.data import dataset as ds  # noqa: E402
from trm_jax.data import pipeline  # noqa: E402

TARGETS = {"arc": 10_000, "arc_materialized": None, "sudoku": 50_000, "maze": None}


def _sudoku(root: Path, n: int, rng: np.random.Generator) -> None:
    r, c = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    solved = ((r * 3 + r // 3 + c) % 9 + 1).reshape(-1)
    labels = np.tile(solved + 1, (n, 1))
    inputs = np.where(rng.random((n, 81)) < 0.7, 1, labels)
    ds.write_split(
        root,
        "train",
        inputs=inputs,
        labels=labels,
        puzzle_identifiers=np.zeros(n, np.int32),
        puzzle_indices=np.arange(n + 1),
        group_indices=np.arange(n + 1),
        vocab_size=11,
        seq_len=81,
        num_puzzle_identifiers=1,
        task="sudoku",
        augmentation={"kind": "sudoku"},
    )


def _maze(root: Path, n: int, rng: np.random.Generator) -> None:
    inputs = rng.integers(1, 5, (n, 900))
    labels = np.where(rng.random((n, 900)) < 0.1, 5, inputs)
    ds.write_split(
        root,
        "train",
        inputs=inputs,
        labels=labels,
        puzzle_identifiers=np.zeros(n, np.int32),
        puzzle_indices=np.arange(n + 1),
        group_indices=np.arange(n + 1),
        vocab_size=6,
        seq_len=900,
        num_puzzle_identifiers=1,
        task="maze",
        augmentation={"kind": "dihedral"},
    )


def _measure(path: Path, batches: int, gbs: int) -> float:
    it = pipeline.train_iterator(
        path, global_batch_size=gbs, seed=0, epochs_per_iter=100, prefetch=0
    )
    next(it)  # warm-up (first group order, page cache)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["inputs"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--global-batch-size", type=int, default=768)
    p.add_argument("--arc-puzzles", type=int, default=40, help="puzzles per ARC subset")
    p.add_argument("--arc-num-aug", type=int, default=50)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = dict(
            subsets=["training", "evaluation", "concept"],
            test_set="evaluation",
            num_aug=args.arc_num_aug,
            seed=42,
            max_puzzles=args.arc_puzzles,
            log=lambda _: None,
        )
        arc_builder.build(tmp / "arc", **common)
        arc_builder.build(tmp / "arc_m", materialize=True, **common)
        _sudoku(tmp / "sudoku", 1000, rng)
        _maze(tmp / "maze", 1000, rng)
        for name, path in (
            ("arc", tmp / "arc"),
            ("arc_materialized", tmp / "arc_m"),
            ("sudoku", tmp / "sudoku"),
            ("maze", tmp / "maze"),
        ):
            results[name] = round(_measure(path, args.batches, args.global_batch_size))

    report = {
        "examples_per_s": results,
        "global_batch_size": args.global_batch_size,
        "batches": args.batches,
        "targets": {k: v for k, v in TARGETS.items() if v},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(f"\n{'pipeline':<18} {'examples/s':>12} {'target':>10}")
    ok = True
    for name, v in results.items():
        target = TARGETS.get(name)
        ok &= target is None or v >= target
        print(f"{name:<18} {v:>12,} {target if target else '-':>10}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
