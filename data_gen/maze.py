"""Maze-Hard style mazes: generator, shortest-path solver and dataset builder.

A maze is a 30x30 grid, row-major, over the charset of reference §1.3: '#' wall, ' ' open,
'S' start, 'G' goal; the answer is the same grid with the cells of the shortest S-G path between
S and G marked 'o'. Moves are to the four neighbours.

Generation: a perfect maze by randomized depth-first search on the 14x14 lattice of odd (row,
column) cells inside a wall border, then a fraction of the remaining walls between two lattice
cells knocked out to make loops. S is drawn among the open cells; G among the open cells whose
shortest path from S is longer than `min_path` steps (default 110: more than 110 moves) and
unique (shortest paths are counted with BFS layers, capped at two). Every maze i of a seed comes
from its own random stream (seed, i), so the output does not depend on the number of workers.

Commands (python -m data_gen.maze ...):
  build     generate mazes and write a dataset (train + test, disjoint)
  from-csv  write a dataset from the public Maze-Hard CSV layout (source,question,answer,rating)
  solve     read 900-character mazes, one per line, print the answer grid and the path length
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data_gen import common
from data_gen.common import CliParser, InputError
from trm_jax import tasks
from trm_jax.data import tokens as tok

GENERATOR_VERSION = "trm_jax.data_gen.maze/1"
MAZE = tasks.MAZE  # the 30x30 task record: token map, question check, solver, answer check
SIDE = MAZE.side
SEQ_LEN = MAZE.seq_len
LATTICE = (SIDE - 2) // 2  # 14 lattice cells per side, at rows/columns 1, 3, ..., 27


@dataclass(frozen=True)
class MazeSpec:
    """Generation settings: path longer than `min_path` steps; `loop_fraction` of the walls left
    between lattice cells after the depth-first search are opened."""

    min_path: int = 110
    loop_fraction: float = 0.04
    max_attempts: int = 1000


# ---------------------------------------------------------------------------------------------
# Generator


def maze_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"trm_jax.maze:{seed}:{index}")


def random_maze(rng: random.Random, loop_fraction: float) -> list[bool]:
    """Open cells (True) of a random 30x30 maze: depth-first search on the lattice plus loops."""
    open_ = [False] * SEQ_LEN

    def cell(a: int, b: int) -> int:
        return (2 * a + 1) * SIDE + 2 * b + 1

    seen = [[False] * LATTICE for _ in range(LATTICE)]
    a0, b0 = rng.randrange(LATTICE), rng.randrange(LATTICE)
    seen[a0][b0] = True
    open_[cell(a0, b0)] = True
    stack = [(a0, b0)]
    moves = ((-1, 0), (1, 0), (0, -1), (0, 1))
    while stack:
        a, b = stack[-1]
        nbrs = [
            (a + da, b + db)
            for da, db in moves
            if 0 <= a + da < LATTICE and 0 <= b + db < LATTICE and not seen[a + da][b + db]
        ]
        if not nbrs:
            stack.pop()
            continue
        na, nb = nbrs[rng.randrange(len(nbrs))]
        seen[na][nb] = True
        open_[cell(na, nb)] = True
        open_[(cell(a, b) + cell(na, nb)) // 2] = True  # the wall between them
        stack.append((na, nb))
    walls = [
        (cell(a, b) + cell(a + da, b + db)) // 2
        for a in range(LATTICE)
        for b in range(LATTICE)
        for da, db in ((1, 0), (0, 1))
        if a + da < LATTICE and b + db < LATTICE
    ]
    for w in walls:
        if not open_[w] and rng.random() < loop_fraction:
            open_[w] = True
    return open_


def generate_one(seed: int, index: int, spec: MazeSpec) -> tuple[str, str, int]:
    """Maze number `index` of `seed`: (question, answer, path length in steps)."""
    rng = maze_rng(seed, index)
    for _ in range(spec.max_attempts):
        open_ = random_maze(rng, spec.loop_fraction)
        cells = [i for i in range(SEQ_LEN) if open_[i]]
        for _ in range(8):  # a few starts per maze before drawing a new maze
            start = cells[rng.randrange(len(cells))]
            dist, count = tasks.bfs(open_, start, SIDE)
            goals = [i for i in cells if dist[i] > spec.min_path and count[i] == 1]
            if not goals:
                continue
            goal = goals[rng.randrange(len(goals))]
            q = ["#" if not o else " " for o in open_]
            q[start], q[goal] = "S", "G"
            question = "".join(q)
            path, n = tasks.shortest_path(open_, start, goal, SIDE)
            assert n == 1 and len(path) - 1 == dist[goal]
            return question, MAZE.mark_path(question, path), dist[goal]
    raise RuntimeError(
        f"no maze with a unique shortest path longer than {spec.min_path} steps in "
        f"{spec.max_attempts} attempts (seed {seed}, #{index})"
    )


def generate_many(
    seed: int, count: int, spec: MazeSpec, workers: int = 1, quiet: bool = False
) -> tuple[list[tuple[str, str, int]], int]:
    """`count` distinct mazes in index order (duplicates replaced by the next unused indices),
    independent of `workers`. Returns (records, number of indices used)."""
    return common.generate_many(
        generate_one, seed, count, spec, workers, quiet, what="maze", hint="lower --min-path"
    )


# ---------------------------------------------------------------------------------------------
# Parsing, checking and datasets


def check_question(q: str) -> str | None:
    """None if `q` is a valid 30x30 maze question (one line, row-major), else what is wrong."""
    return MAZE.line_problem(q)


def solve_maze(question: str) -> tuple[str | None, int, int]:
    """(answer grid or None, path length in steps, number of shortest paths capped at 2) for a
    valid question (see `check_question`)."""
    return MAZE.solve(question)


def tokens_array(grids: Sequence[str]) -> np.ndarray:
    """Validated 900-character grids -> uint8 token ids [N, 900] (reference §1.3 map)."""
    return tok.mazes_to_tokens(grids, SEQ_LEN)


def _length_histogram(lengths: Sequence[int]) -> dict[str, int]:
    c = Counter(f"{(n // 20) * 20}-{(n // 20) * 20 + 19}" for n in lengths)
    return dict(sorted(c.items(), key=lambda kv: int(kv[0].split("-")[0])))


def write_dataset(
    out: str,
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]] | None,
    *,
    aug: bool,
    metadata: dict,
    path_lengths: dict[str, list[int]] | None = None,
) -> None:
    """Write the train (and test) split and identifiers.json: one group with one puzzle with one
    example per maze, all identifiers 0; train asks for on-the-fly dihedral augmentation when
    `aug` is set. `out` is replaced at once (a temporary sibling, then one rename), never a
    directory that is not a dataset of ours."""
    splits = [("train", train, {"kind": "dihedral"} if aug else None)]
    if test is not None:
        splits.append(("test", test, None))
    with common.building(out, "data_gen.maze") as tmp:
        _write_splits(tmp, splits, metadata, path_lengths)


def _write_splits(out, splits, metadata: dict, path_lengths: dict | None) -> None:
    from trm_jax.data import dataset

    for name, (qs, ans), augmentation in splits:
        n = len(qs)
        meta = dict(metadata)
        meta["split_counts"] = {"mazes": n}
        if path_lengths and path_lengths.get(name):
            lengths = path_lengths[name]
            meta["path_length"] = {
                "min": min(lengths),
                "mean": round(sum(lengths) / n, 2),
                "max": max(lengths),
                "histogram": _length_histogram(lengths),
            }
        dataset.write_split(
            out,
            name,
            inputs=tokens_array(qs),
            labels=tokens_array(ans),
            puzzle_identifiers=np.zeros(n, dtype=np.int32),
            puzzle_indices=np.arange(n + 1, dtype=np.int32),
            group_indices=np.arange(n + 1, dtype=np.int32),
            vocab_size=MAZE.vocab_size,
            seq_len=SEQ_LEN,
            num_puzzle_identifiers=1,
            task="maze",
            augmentation=augmentation,
            pad_id=0,
            ignore_label_id=0,
            blank_identifier_id=0,
            extra_metadata=meta,
        )
    dataset.write_identifiers(out, ["<blank>"])


def read_csv(path: str, subsample: int | None = None, seed: int = 0) -> tuple[list[str], list[str]]:
    """(questions, answers) of a CSV with the header `source,question,answer,rating` (Maze-Hard),
    optionally `subsample` rows drawn without replacement with a seeded generator (file order).
    Each row: a 900-character question over '# SG' and an answer equal to it except for 'o' on
    open cells. The rating column is not used. Raises InputError naming the file and line."""
    qs: list[str] = []
    ans: list[str] = []
    lines: list[int] = []
    for line, row in common.csv_rows(path, "Maze-Hard"):
        q, a = row[1], row[2]
        if len(q) != SEQ_LEN or q.strip("# SG"):
            raise InputError(
                f"{path} line {line}: expected a question of {SEQ_LEN} characters "
                "from '#', ' ', 'S', 'G'"
            )
        if len(a) != SEQ_LEN or a.strip("# SGo"):
            raise InputError(
                f"{path} line {line}: expected an answer of {SEQ_LEN} characters "
                "from '#', ' ', 'S', 'G', 'o'"
            )
        qs.append(q)
        ans.append(a)
        lines.append(line)
    if qs:
        tq, ta = tokens_array(qs), tokens_array(ans)
        # The answer equals the question except 'o' (5) on open cells (2).
        ok = ((tq == ta) | ((tq == 2) & (ta == 5))).all(axis=1)
        bad = np.flatnonzero(~ok)
        if bad.size:
            raise InputError(
                f"{path} line {lines[bad[0]]}: expected an answer equal to the question except "
                "for 'o' on open cells"
            )
    if subsample is not None and subsample < len(qs):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3A2E]))
        keep = np.sort(rng.choice(len(qs), size=subsample, replace=False))
        qs, ans = [qs[i] for i in keep], [ans[i] for i in keep]
    return qs, ans


# ---------------------------------------------------------------------------------------------
# Command line


def _cmd_build(args: argparse.Namespace) -> int:
    common.check_out(args.out, args.overwrite)
    if args.num_train < 1 or args.num_test < 0 or args.workers < 1:
        raise InputError("expected --num-train >= 1, --num-test >= 0 and --workers >= 1")
    if not 1 <= args.min_path < 400:
        raise InputError(f"expected 1 <= --min-path < 400, got {args.min_path}")
    if not 0.0 <= args.loop_fraction <= 1.0:
        raise InputError(f"expected 0 <= --loop-fraction <= 1, got {args.loop_fraction}")
    spec = MazeSpec(args.min_path, args.loop_fraction)
    total = args.num_train + args.num_test
    t0 = time.perf_counter()
    recs, used = generate_many(args.seed, total, spec, args.workers, quiet=args.quiet)
    dt = time.perf_counter() - t0
    tr, te = recs[: args.num_train], recs[args.num_train :]
    metadata = {
        "source": "generated",
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "min_path": args.min_path,
        "loop_fraction": args.loop_fraction,
        "counts": {"train": args.num_train, "test": args.num_test, "indices_used": used},
    }
    write_dataset(
        args.out,
        ([r[0] for r in tr], [r[1] for r in tr]),
        ([r[0] for r in te], [r[1] for r in te]) if te else None,
        aug=args.aug,
        metadata=metadata,
        path_lengths={"train": [r[2] for r in tr], "test": [r[2] for r in te]},
    )
    lengths = [r[2] for r in recs]
    print(f"wrote {args.out}: train {len(tr)} mazes, test {len(te)}")
    rate = f"{total / dt:.1f} mazes/s, {args.workers} worker(s)"
    print(f"  generated {total} mazes in {dt:.1f} s ({rate})")
    print(
        f"  path length (steps): min {min(lengths)}, mean {sum(lengths) / total:.1f}, "
        f"max {max(lengths)}; train augmentation: {'dihedral' if args.aug else 'none'}"
    )
    return 0


def _cmd_from_csv(args: argparse.Namespace) -> int:
    common.check_out(args.out, args.overwrite)
    if args.subsample_size is not None and args.subsample_size < 1:
        raise InputError("expected --subsample-size >= 1")
    train = read_csv(args.csv, args.subsample_size, args.seed)
    if not train[0]:
        raise InputError(f"{args.csv}: no rows; expected at least one maze")
    test = read_csv(args.test_csv) if args.test_csv else None
    metadata = {
        "source": "csv",
        "csv": os.path.basename(args.csv),
        "test_csv": os.path.basename(args.test_csv) if args.test_csv else None,
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "subsample_size": args.subsample_size,
        "counts": {"train": len(train[0]), "test": len(test[0]) if test else 0},
    }
    write_dataset(args.out, train, test, aug=args.aug, metadata=metadata)
    print(f"wrote {args.out}: train {len(train[0])} mazes, test {len(test[0]) if test else 0}")
    return 0


def _cmd_solve(args: argparse.Namespace) -> int:
    name, text = common.read_text_input(args.file, "mazes")
    status = 0
    for n, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip(" \t"):
            continue
        problem = check_question(line)
        if problem is None:
            answer, length, count = solve_maze(line)
            if answer is None:
                problem = "G cannot be reached from S"
            elif count > 1:
                problem = "there is more than one shortest path"
        if problem is not None:
            print(f"{name} line {n}: {problem}.", file=sys.stderr)
            status = 2
            continue
        print(f"{answer}\t{length}")
    return status


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="python -m data_gen.maze", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="generate mazes and write a dataset")
    b.add_argument("--out", required=True, help="dataset directory")
    b.add_argument("--num-train", type=int, default=1000)
    b.add_argument("--num-test", type=int, default=1000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--aug", action="store_true", help="dihedral augmentation of train on the fly")
    b.add_argument("--min-path", type=int, default=110, help="path longer than this many steps")
    b.add_argument("--loop-fraction", type=float, default=0.04, help="remaining walls opened")
    b.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    b.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    common.add_overwrite(b)
    b.set_defaults(func=_cmd_build)

    c = sub.add_parser("from-csv", help="dataset from the Maze-Hard CSV layout")
    c.add_argument("--csv", required=True, help="train CSV (source,question,answer,rating)")
    c.add_argument("--test-csv", default=None, help="test CSV (same layout)")
    c.add_argument("--out", required=True)
    c.add_argument("--subsample-size", type=int, default=None, help="train rows to keep")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--aug", action="store_true", help="dihedral augmentation of train on the fly")
    common.add_overwrite(c)
    c.set_defaults(func=_cmd_from_csv)

    s = sub.add_parser("solve", help="solve 900-character mazes, one per line (FILE or stdin)")
    s.add_argument("file", nargs="?", default=None)
    s.set_defaults(func=_cmd_solve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_main("maze", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
