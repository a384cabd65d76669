"""Sudoku: exact solver with a difficulty rating, unique-puzzle generator and dataset builder.

The solver keeps one 9-bit candidate mask per cell (bit d-1 set = digit d still possible) in a
plain Python list, propagates naked singles (a cell with one candidate) and hidden singles (a digit
with one place in a row, column or box) to a fixed point, then branches on the unsolved cell with
the fewest candidates (lowest index on ties, digits in ascending order). It counts solutions up to
a limit (2 by default, enough to prove uniqueness).

Rating: the number of guesses, i.e. branching decisions (search nodes at which propagation alone
could not continue), in the complete search that counts solutions up to two. 0 means naked and
hidden singles solve the puzzle; for a puzzle with one solution the whole search tree is explored,
so the rating does not depend on the order in which digits are tried. Like tdoku's backtrack count
(the `rating` column of Sudoku-Extreme) it measures how much search this solver needs; the two
scales are not the same.

Commands (python -m data_gen.sudoku ...):
  build     generate unique puzzles and write a dataset (train + test, disjoint)
  from-csv  write a dataset from the public Sudoku-Extreme CSV layout
  solve     solve 81-character puzzles, one per line, print solution and rating
  bench     generation and solving speed per rating level, as JSON and a table
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from data_gen import common
from data_gen.common import CliParser, InputError
from trm_jax.tasks import SUDOKU
from trm_jax.tasks import sudoku as sudoku_task

GENERATOR_VERSION = "trm_jax.data_gen.sudoku/1"
ALL = 0x1FF  # all nine candidates

_ROW = [i // 9 for i in range(81)]
_COL = [i % 9 for i in range(81)]
_BOX = [(i // 27) * 3 + (i % 9) // 3 for i in range(81)]
_UNITS = (
    [tuple(r * 9 + c for c in range(9)) for r in range(9)]
    + [tuple(r * 9 + c for r in range(9)) for c in range(9)]
    + [tuple(i for i in range(81) if _BOX[i] == b) for b in range(9)]
)
_PEERS = [
    tuple(
        j
        for j in range(81)
        if j != i and (_ROW[j] == _ROW[i] or _COL[j] == _COL[i] or _BOX[j] == _BOX[i])
    )
    for i in range(81)
]
_UNITS_OF = [(1 << _ROW[i]) | (1 << (9 + _COL[i])) | (1 << (18 + _BOX[i])) for i in range(81)]
_ALL_UNITS = (1 << 27) - 1
_POP = [bin(m).count("1") for m in range(512)]
_DIGIT = {1 << d: d + 1 for d in range(9)}  # single-bit mask -> digit


@dataclass(frozen=True)
class SolveResult:
    """Outcome of `solve`: `num_solutions` is capped at the limit (0, 1 or 2 by default)."""

    num_solutions: int
    solution: list[int] | None  # the first solution found (81 digits), None if there is none
    rating: int  # guesses (branching decisions) in the search


# ---------------------------------------------------------------------------------------------
# Solver core


def _propagate(cand, stack, dirty: int = _ALL_UNITS):
    peers = _PEERS
    uof = _UNITS_OF
    units = _UNITS
    while True:
        while stack:
            i = stack.pop()
            b = cand[i]
            for p in peers[i]:
                c = cand[p]
                if c & b:
                    c ^= b
                    if not c:
                        return False
                    cand[p] = c
                    dirty |= uof[p]
                    if not c & (c - 1):
                        stack.append(p)
        if not dirty:
            return True
        k = 0
        d = dirty
        dirty = 0
        while d:
            if d & 1:
                u = units[k]
                once = twice = 0
                for i in u:
                    c = cand[i]
                    twice |= once & c
                    once |= c
                if once != ALL:
                    return False
                hidden = once & ~twice
                if hidden:
                    for i in u:
                        c = cand[i]
                        h = c & hidden
                        if h and h != c:
                            if h & (h - 1):
                                return False
                            cand[i] = h
                            dirty |= uof[i]
                            stack.append(i)
            d >>= 1
            k += 1
        if not stack:
            return True


def _initial(grid: Sequence[int]) -> list[int] | None:
    """Candidate masks for a grid of 81 digits (0 = blank), singles propagated; None when the
    givens contradict each other or propagation finds a contradiction."""
    rows = [0] * 9
    cols = [0] * 9
    boxes = [0] * 9
    for i, d in enumerate(grid):
        if d:
            b = 1 << (d - 1)
            r, c, x = _ROW[i], _COL[i], _BOX[i]
            if (rows[r] | cols[c] | boxes[x]) & b:
                return None
            rows[r] |= b
            cols[c] |= b
            boxes[x] |= b
    cand = [0] * 81
    stack = []
    for i, d in enumerate(grid):
        if d:
            cand[i] = 1 << (d - 1)
        else:
            c = ALL & ~(rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]])
            if not c:
                return None
            cand[i] = c
            if not c & (c - 1):
                stack.append(i)
    if not _propagate(cand, stack):
        return None
    return cand


def _pick(cand: list[int]) -> int:
    """The unsolved cell with the fewest candidates (lowest index on ties), -1 if all solved."""
    pop = _POP
    best = -1
    best_n = 10
    for i in range(81):
        n = pop[cand[i]]
        if 1 < n < best_n:
            best = i
            best_n = n
            if n == 2:
                break
    return best


class _Search:
    __slots__ = ("limit", "count", "guesses", "solution")

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self.guesses = 0
        self.solution: list[int] | None = None

    def run(self, cand: list[int]) -> None:
        i = _pick(cand)
        if i < 0:
            self.count += 1
            if self.solution is None:
                self.solution = [_DIGIT[c] for c in cand]
            return
        self.guesses += 1
        c = cand[i]
        while c:
            b = c & -c
            c ^= b
            new = cand[:]
            new[i] = b
            if _propagate(new, [i], _UNITS_OF[i]):
                self.run(new)
                if self.count >= self.limit:
                    return


def solve(grid: Sequence[int], limit: int = 2) -> SolveResult:
    """Solve a grid of 81 digits (0 = blank), counting solutions up to `limit`."""
    grid = [int(d) for d in grid]
    if len(grid) != 81 or not all(0 <= d <= 9 for d in grid):
        raise ValueError("expected 81 cells holding 0 (blank) to 9")
    cand = _initial(grid)
    if cand is None:
        return SolveResult(0, None, 0)
    search = _Search(limit)
    search.run(cand)
    return SolveResult(search.count, search.solution, search.guesses)


def count_solutions(grid: Sequence[int], limit: int = 2) -> int:
    """Number of solutions of `grid`, capped at `limit`."""
    return solve(grid, limit).num_solutions


def _has_solution_without(grid: list[int], cell: int) -> bool:
    """True if the grid, with `cell` blanked, has a solution whose digit at `cell` differs from
    grid[cell]; i.e. blanking the cell would break uniqueness."""
    d = grid[cell]
    grid[cell] = 0
    try:
        cand = _initial_excluding(grid, cell, 1 << (d - 1))
    finally:
        grid[cell] = d
    if cand is None:
        return False
    search = _Search(1)
    search.run(cand)
    return search.count > 0


def _initial_excluding(grid: Sequence[int], cell: int, bit: int) -> list[int] | None:
    rows = [0] * 9
    cols = [0] * 9
    boxes = [0] * 9
    for i, d in enumerate(grid):
        if d:
            b = 1 << (d - 1)
            rows[_ROW[i]] |= b
            cols[_COL[i]] |= b
            boxes[_BOX[i]] |= b
    cand = [0] * 81
    stack = []
    for i, d in enumerate(grid):
        if d:
            cand[i] = 1 << (d - 1)
        else:
            c = ALL & ~(rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]])
            if i == cell:
                c &= ~bit
            if not c:
                return None
            cand[i] = c
            if not c & (c - 1):
                stack.append(i)
    if not _propagate(cand, stack):
        return None
    return cand


# ---------------------------------------------------------------------------------------------
# Generator


def random_solution(rng: random.Random) -> list[int]:
    """A random complete grid: the three diagonal boxes filled independently at random, the rest
    found by a search that tries digits in random order."""
    grid = [0] * 81
    for b in (0, 4, 8):
        digits = list(range(1, 10))
        rng.shuffle(digits)
        cells = _UNITS[18 + b]
        for i, d in zip(cells, digits):
            grid[i] = d
    cand = _initial(grid)
    assert cand is not None
    result = _random_first(cand, rng)
    assert result is not None
    return [_DIGIT[c] for c in result]


def _random_first(cand: list[int], rng: random.Random) -> list[int] | None:
    i = _pick(cand)
    if i < 0:
        return cand
    c = cand[i]
    bits = [1 << d for d in range(9) if c >> d & 1]
    rng.shuffle(bits)
    for b in bits:
        new = cand[:]
        new[i] = b
        if _propagate(new, [i], _UNITS_OF[i]):
            found = _random_first(new, rng)
            if found is not None:
                return found
    return None


def make_unique_puzzle(
    solution: Sequence[int], rng: random.Random, min_givens: int = 0
) -> list[int]:
    """Remove clues from a complete grid in random order, keeping each removal only while the
    solution stays unique, stopping at `min_givens` givens or when no clue can be removed
    (a minimal puzzle)."""
    grid = list(solution)
    order = list(range(81))
    rng.shuffle(order)
    givens = 81
    for cell in order:
        if givens <= min_givens:
            break
        if not _has_solution_without(grid, cell):
            grid[cell] = 0
            givens -= 1
    return grid


@dataclass(frozen=True)
class GenSpec:
    """Filters for `generate_one`: stop removing at `min_givens`, reject puzzles with more than
    `max_givens` givens or a rating outside [min_rating, max_rating]. With `givens_mix` (LO, HI)
    puzzle i instead gets its own givens count `mix_givens(seed, i, LO, HI)` as both bounds."""

    min_givens: int = 0
    max_givens: int = 81
    min_rating: int = 0
    max_rating: int | None = None
    max_attempts: int = 20_000
    givens_mix: tuple[int, int] | None = None


MIX_STREAM = "random.Random(f'mix:{seed}:{index}').randint(lo, hi)"


def mix_givens(seed: int, index: int, lo: int, hi: int) -> int:
    """The givens count of puzzle `index` in a --givens-mix LO-HI build: uniform on [lo, hi]
    from a stream of (seed, index) only (`MIX_STREAM`), so it does not depend on the workers."""
    return random.Random(f"mix:{seed}:{index}").randint(lo, hi)


def puzzle_rng(seed: int, index: int) -> random.Random:
    """The random stream of puzzle `index`: a function of (seed, index) only, so the output does
    not depend on how the work is split between processes."""
    return random.Random(f"trm_jax.sudoku:{seed}:{index}")


def generate_one(seed: int, index: int, spec: GenSpec) -> tuple[str, str, int, int, int]:
    """Puzzle number `index` for `seed`: (puzzle, solution, rating, givens, attempts), the puzzle
    and solution as 81-character strings ('.' for blanks). Raises RuntimeError when
    `spec.max_attempts` candidates all fail the filters."""
    if spec.givens_mix is not None:
        g = mix_givens(seed, index, *spec.givens_mix)
        spec = replace(spec, min_givens=g, max_givens=g, givens_mix=None)
    rng = puzzle_rng(seed, index)
    for attempt in range(1, spec.max_attempts + 1):
        solution = random_solution(rng)
        puzzle = make_unique_puzzle(solution, rng, spec.min_givens)
        givens = sum(1 for d in puzzle if d)
        if givens > spec.max_givens:
            continue
        result = solve(puzzle)
        if result.num_solutions != 1 or result.solution != solution:
            raise AssertionError(f"generator produced a non-unique puzzle (seed {seed}, #{index})")
        if result.rating < spec.min_rating:
            continue
        if spec.max_rating is not None and result.rating > spec.max_rating:
            continue
        return grid_to_str(puzzle), grid_to_str(solution), result.rating, givens, attempt
    raise RuntimeError(
        f"no puzzle passed the filters in {spec.max_attempts} attempts (seed {seed}, #{index})"
    )


# ---------------------------------------------------------------------------------------------
# Parsing and formatting


def parse_puzzle(text: str) -> list[int]:
    """81 cells from a string of digits with '.' or '0' for blanks; whitespace is ignored.
    Raises InputError (message without the location) when the text is not such a puzzle."""
    s = "".join(text.split())
    if len(s) != 81:
        raise InputError(f"expected 81 cells of digits 1-9 or '.'/'0' for blanks, got {len(s)}")
    grid = []
    for ch in s:
        if ch in ".0":
            grid.append(0)
        elif "1" <= ch <= "9":
            grid.append(ord(ch) - 48)
        else:
            raise InputError(f"expected digits 1-9 or '.'/'0' for blanks, found {ch!r}")
    return grid


def grid_to_str(grid: Sequence[int], blank: str = ".") -> str:
    return "".join(str(d) if d else blank for d in grid)


def rating_bucket(rating: int) -> str:
    """Histogram bucket of a rating: 0, 1, 2-3, 4-7, 8-15, 16-31, 32+."""
    if rating < 2:
        return str(rating)
    lo = 1 << (rating.bit_length() - 1)
    return f"{lo}+" if lo >= 32 else f"{lo}-{2 * lo - 1}"


RATING_BUCKETS = ("0", "1", "2-3", "4-7", "8-15", "16-31", "32+")


def _histogram(ratings: Iterable[int]) -> dict[str, int]:
    counts = Counter(rating_bucket(r) for r in ratings)
    return {b: counts[b] for b in RATING_BUCKETS if counts[b]}


# ---------------------------------------------------------------------------------------------
# Tokens and the materialised shuffle


def digits_array(strings: Sequence[str]) -> np.ndarray:
    """81-character puzzle strings ('.' or '0' blank) -> int8 digits [N, 81], 0 for blank.
    The strings must already be validated."""
    if not strings:
        return np.zeros((0, 81), dtype=np.int8)
    buf = "".join(strings).replace(".", "0").encode("ascii")
    return (np.frombuffer(buf, dtype=np.uint8).reshape(-1, 81) - ord("0")).astype(np.int8)


def shuffle_digits(
    puzzles: np.ndarray, solutions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random Sudoku shuffle per row of digit grids [M, 81] (0 = blank), the same for a puzzle
    and its solution: digit permutation with the blank fixed, transpose with probability 0.5
    (applied first), bands and the rows in each band shuffled, likewise stacks and columns; new
    cell (r, c) takes cell (row_perm[r], col_perm[c]) of the possibly transposed grid."""
    m = puzzles.shape[0]
    digit_map = np.zeros((m, 10), dtype=np.int8)
    digit_map[:, 1:] = np.argsort(rng.random((m, 9)), axis=1) + 1
    transpose = rng.random(m) < 0.5
    perms = []
    for _ in range(2):
        bands = np.argsort(rng.random((m, 3)), axis=1)
        inner = np.argsort(rng.random((m, 3, 3)), axis=2)
        perms.append((bands[:, :, None] * 3 + inner).reshape(m, 9))
    r = perms[0][:, :, None]
    c = perms[1][:, None, :]
    # The transposed grid T has T[a, b] = G[b, a].
    src = np.where(transpose[:, None, None], c * 9 + r, r * 9 + c).reshape(m, 81)
    rows = np.arange(m)[:, None]
    out = []
    for grid in (puzzles, solutions):
        gathered = np.take_along_axis(grid, src, axis=1)
        out.append(digit_map[rows, gathered])
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# Datasets


# The extra array (``all__rating.npy``, int32 [N_examples]) holding each example's rating, written
# when every rating of the split is known (trm_jax.tasks.sudoku.split_breakdown reads it).
RATING_ARRAY = sudoku_task.RATING_ARRAY


@dataclass
class Records:
    """Puzzles and solutions as 81-character strings, with their ratings (None when unknown)."""

    puzzles: list[str]
    solutions: list[str]
    ratings: list[int | None]


def write_dataset(
    out: str,
    train: Records,
    test: Records | None,
    *,
    materialize: int,
    seed: int,
    metadata: dict,
    rating_name: str = "rating_histogram",
) -> None:
    """Write the train (and test) split of a Sudoku dataset and identifiers.json into `out`,
    replaced at once (a temporary sibling, then one rename; never a directory that is not a
    dataset of ours). Each original is one group; without materialisation it holds one puzzle
    (the original) and the train split is augmented on the fly; with `materialize` N it holds
    the original plus N shuffled copies, as the reference builder's --num-aug does, and no
    on-the-fly augmentation is asked for."""

    splits = []
    n = len(train.puzzles)
    p = digits_array(train.puzzles)
    s = digits_array(train.solutions)
    per_group = 1 + materialize
    if materialize:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5D0C]))
        inputs = np.empty((n, per_group, 81), dtype=np.int8)
        labels = np.empty((n, per_group, 81), dtype=np.int8)
        inputs[:, 0], labels[:, 0] = p, s
        chunk = max(1, 50_000 // materialize)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            rep_p = np.repeat(p[lo:hi], materialize, axis=0)
            rep_s = np.repeat(s[lo:hi], materialize, axis=0)
            ap, as_ = shuffle_digits(rep_p, rep_s, rng)
            inputs[lo:hi, 1:] = ap.reshape(hi - lo, materialize, 81)
            labels[lo:hi, 1:] = as_.reshape(hi - lo, materialize, 81)
        p, s = inputs.reshape(-1, 81), labels.reshape(-1, 81)
        train_aug = None
    else:
        train_aug = {"kind": "sudoku"}
    splits.append(("train", p, s, per_group, train_aug, train))
    if test is not None:
        splits.append(
            ("test", digits_array(test.puzzles), digits_array(test.solutions), 1, None, test)
        )
    with common.building(out, "data_gen.sudoku") as tmp:
        _write_splits(tmp, splits, metadata, rating_name)


def _write_splits(out, splits, metadata: dict, rating_name: str) -> None:
    from trm_jax.data import dataset

    for name, p, s, per_group, aug, recs in splits:
        n_puzzles = p.shape[0]
        known = [r for r in recs.ratings if r is not None]
        meta = dict(metadata)
        meta["split_counts"] = {
            "originals": len(recs.puzzles),
            "puzzles_per_group": per_group,
            "examples": int(n_puzzles),
        }
        if known:
            meta[rating_name] = _histogram(known)
        extra = None
        if recs.ratings and len(known) == len(recs.ratings):
            # One rating per stored example (a group's shuffled copies share the original's).
            extra = {RATING_ARRAY: np.repeat(np.asarray(known, dtype=np.int32), per_group)}
        meta["givens_histogram"] = {
            str(k): v
            for k, v in sorted(
                Counter(81 - q.count(".") - q.count("0") for q in recs.puzzles).items()
            )
        }
        dataset.write_split(
            out,
            name,
            inputs=np.add(p, 1, out=p).view(np.uint8),  # tokens: blank 1, digit d -> d + 1
            labels=np.add(s, 1, out=s).view(np.uint8),
            puzzle_identifiers=np.zeros(n_puzzles, dtype=np.int32),
            puzzle_indices=np.arange(n_puzzles + 1, dtype=np.int32),
            group_indices=np.arange(0, n_puzzles + 1, per_group, dtype=np.int32),
            vocab_size=SUDOKU.vocab_size,
            seq_len=SUDOKU.seq_len,
            num_puzzle_identifiers=1,
            task="sudoku",
            augmentation=aug,
            pad_id=0,
            ignore_label_id=0,
            blank_identifier_id=0,
            extra_arrays=extra,
            extra_metadata=meta,
        )
    dataset.write_identifiers(out, ["<blank>"])


def generate_many(
    seed: int, count: int, spec: GenSpec, workers: int = 1, quiet: bool = False
) -> tuple[list[tuple[str, str, int, int, int]], int]:
    """`count` distinct puzzles for `seed`, in index order: puzzle i comes from the random stream
    (seed, i), duplicates are replaced by the next unused indices, so the result does not depend
    on `workers`. Returns (records, number of indices used). Raises InputError when a puzzle
    cannot pass the filters in spec.max_attempts attempts."""
    return common.generate_many(
        generate_one,
        seed,
        count,
        spec,
        workers,
        quiet,
        what="sudoku",
        hint="loosen the filters (--min-rating, --max-rating, givens) or raise --max-attempts",
    )


# ---------------------------------------------------------------------------------------------
# CSV (Sudoku-Extreme layout)


def read_csv(
    path: str,
    min_rating: int | None = None,
    subsample: int | None = None,
    seed: int = 0,
) -> Records:
    """Rows of a CSV with the header `source,question,answer,rating` (Sudoku-Extreme), keeping
    rows with rating >= min_rating, then `subsample` of them drawn without replacement with a
    seeded generator (in file order). Every row is checked: 81-character question over '.' and
    digits, 81-digit answer that keeps the givens and obeys the Sudoku rules, integer rating.
    Raises InputError naming the file, the line and what was expected."""
    q_parts: list[str] = []
    a_parts: list[str] = []
    lines: list[int] = []
    ratings: list[int] = []
    for line, row in common.csv_rows(path, "Sudoku-Extreme"):
        _, q, a, r = row
        try:
            rating = int(r)
        except ValueError:
            raise InputError(f"{path} line {line}: expected an integer rating, got {r!r}") from None
        if len(q) != 81 or q.strip(".0123456789"):
            raise InputError(
                f"{path} line {line}: expected a question of 81 characters "
                "'1'-'9' or '.'/'0' for blanks"
            )
        if len(a) != 81 or a.strip("123456789"):
            raise InputError(f"{path} line {line}: expected an answer of 81 digits '1'-'9'")
        if min_rating is not None and rating < min_rating:
            continue
        q_parts.append(q)
        a_parts.append(a)
        lines.append(line)
        ratings.append(rating)
    keep = np.arange(len(q_parts))
    if subsample is not None and subsample < len(q_parts):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC5F]))
        keep = np.sort(rng.choice(len(q_parts), size=subsample, replace=False))
    puzzles = [q_parts[i].replace("0", ".") for i in keep]
    solutions = [a_parts[i] for i in keep]
    _check_pairs(path, puzzles, solutions, [lines[i] for i in keep])
    return Records(puzzles, solutions, [ratings[i] for i in keep])


def _check_pairs(path: str, puzzles: list[str], solutions: list[str], lines: list[int]) -> None:
    """Every solution obeys the Sudoku rules and keeps its puzzle's givens (the task's rules)."""
    if not puzzles:
        return
    p = digits_array(puzzles)
    s = digits_array(solutions)
    bad = np.flatnonzero(~SUDOKU.valid(s))
    if bad.size:
        raise InputError(
            f"{path} line {lines[bad[0]]}: expected an answer that obeys the Sudoku rules"
        )
    bad = np.flatnonzero(~SUDOKU.keeps_givens(p, s))
    if bad.size:
        raise InputError(f"{path} line {lines[bad[0]]}: expected an answer that keeps the givens")


# ---------------------------------------------------------------------------------------------
# Benchmark

# Published hard puzzles (see tests/test_data_gen_sudoku.py for their sources).
_FAMOUS = """
inkala_2012 8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..
ai_escargot 1....7.9..3..2...8..96..5....53..9...1..8...26....4...3......1..4......7..7...3..
easter_monster 1.......2.9.4...5...6...7...5.9.3.......7.......85..4.7.....6...3...9.8...2.....1
golden_nugget .......39.....1..5..3.5.8....8.9...6.7...2...1..4.......9.8..5..2....6..4..7.....
platinum_blonde .......12........3..23..4....18....5.6..7.8.......9.....85.....9...4.5..47...6...
"""
FAMOUS_PUZZLES = dict(line.split() for line in _FAMOUS.strip().splitlines())


def bench(seconds: float = 10.0, seed: int = 0) -> dict:
    """Generation and solving speed per rating level on one core. Generates minimal puzzles for
    about half of `seconds`; generation rate for min-rating R = puzzles with rating >= R per
    second of generation (what `build --min-rating R` yields per core). Then solves each rating
    bucket's puzzles repeatedly (count to two, as the rating needs) and the famous puzzles."""
    gen: list[tuple[int, float, list[int]]] = []
    start = time.perf_counter()
    index = 0
    while time.perf_counter() - start < seconds / 2 or len(gen) < 10:
        t = time.perf_counter()
        rng = puzzle_rng(seed, index)
        puzzle = make_unique_puzzle(random_solution(rng), rng)
        rating = solve(puzzle).rating
        gen.append((rating, time.perf_counter() - t, puzzle))
        index += 1
    gen_time = sum(g[1] for g in gen)
    generation = []
    for r in (0, 1, 2, 4, 8, 16, 32):
        n = sum(1 for g in gen if g[0] >= r)
        generation.append(
            {
                "min_rating": r,
                "fraction": round(n / len(gen), 4),
                "puzzles_per_s": round(n / gen_time, 2),
            }
        )
    budget = seconds / 2 / (len(RATING_BUCKETS) + 1)
    solving = []
    groups = [(b, [g[2] for g in gen if rating_bucket(g[0]) == b]) for b in RATING_BUCKETS]
    groups.append(("famous", [parse_puzzle(p) for p in FAMOUS_PUZZLES.values()]))
    for name, puzzles in groups:
        if not puzzles:
            continue
        n = 0
        t = time.perf_counter()
        while True:
            for p in puzzles:
                solve(p)
            n += len(puzzles)
            if time.perf_counter() - t >= budget:
                break
        dt = time.perf_counter() - t
        solving.append({"rating": name, "puzzles": len(puzzles), "puzzles_per_s": round(n / dt, 1)})
    givens = [sum(1 for d in g[2] if d) for g in gen]
    return {
        "generated": len(gen),
        "generation_s": round(gen_time, 2),
        "mean_givens": round(sum(givens) / len(givens), 2),
        "rating_histogram": _histogram(g[0] for g in gen),
        "generation": generation,
        "solving": solving,
    }


def _bench_table(result: dict) -> str:
    lines = [
        f"generated {result['generated']} minimal puzzles in {result['generation_s']} s "
        f"(mean givens {result['mean_givens']}), one core",
        "generation  min-rating  fraction  puzzles/s",
    ]
    for g in result["generation"]:
        lines.append(
            f"            {g['min_rating']:>10}  {g['fraction']:>8.3f}  {g['puzzles_per_s']:>9}"
        )
    lines.append("solving     rating      puzzles   puzzles/s")
    for s in result["solving"]:
        lines.append(f"            {s['rating']:>10}  {s['puzzles']:>8}  {s['puzzles_per_s']:>9}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def _cmd_solve(args: argparse.Namespace) -> int:
    name, text = common.read_text_input(args.file, "puzzles")
    status = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            grid = parse_puzzle(line)
        except InputError as e:
            print(f"{name} line {n}: {e}.", file=sys.stderr)
            status = 2
            continue
        result = solve(grid)
        if result.num_solutions == 0:
            print(f"{name} line {n}: the puzzle has no solution.", file=sys.stderr)
            status = 2
        elif result.num_solutions > 1:
            print(f"{name} line {n}: the puzzle has more than one solution.", file=sys.stderr)
            status = 2
        else:
            print(f"{grid_to_str(result.solution)} {result.rating}", flush=False)
    sys.stdout.flush()
    return status


def _givens_mix(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.split("-"))
    except ValueError:
        raise InputError(f"--givens-mix takes LO-HI like 25-45, got {text!r}") from None
    if not 17 <= lo <= hi <= 81:
        raise InputError(f"expected --givens-mix LO-HI with 17 <= LO <= HI <= 81, got {text!r}")
    return lo, hi


def _givens_range(args: argparse.Namespace) -> tuple[int, int]:
    mix = _givens_mix(args.givens_mix)
    if mix is not None:
        if args.givens is not None or args.min_givens is not None or args.max_givens is not None:
            raise InputError("give either --givens-mix or --givens/--min-givens/--max-givens")
        return mix
    if args.givens is not None:
        if args.min_givens is not None or args.max_givens is not None:
            raise InputError("give either --givens or --min-givens/--max-givens, not both")
        lo = hi = args.givens
    else:
        lo = 17 if args.min_givens is None else args.min_givens
        hi = 81 if args.max_givens is None else args.max_givens
    if not 17 <= lo <= hi <= 81:
        raise InputError(f"expected 17 <= min givens <= max givens <= 81, got {lo} and {hi}")
    return lo, hi


def _print_summary(out: str, train: Records, test: Records | None, extra: list[str]) -> None:
    n_test = len(test.puzzles) if test else 0
    print(f"wrote {out}: train {len(train.puzzles)} originals, test {n_test}")
    for line in extra:
        print(f"  {line}")
    splits = [("train", train)] + ([("test", test)] if test else [])
    hists = {name: _histogram(r for r in recs.ratings if r is not None) for name, recs in splits}
    if any(hists.values()):
        print("  rating  " + "  ".join(f"{name:>7}" for name, _ in splits))
        for b in RATING_BUCKETS:
            if any(h.get(b) for h in hists.values()):
                row = "  ".join(f"{hists[name].get(b, 0):>7}" for name, _ in splits)
                print(f"  {b:>6}  {row}")


# Random clue removal ends at a minimal puzzle of 21-27 givens (about 24 on average); fewer are
# rare, so a filter below this needs many attempts per puzzle (about 14 ms each on one core).
_RARE_GIVENS = 20


def _announce(total: int, lo: int, hi: int, args: argparse.Namespace) -> None:
    givens = f"{lo} givens" if lo == hi else f"{lo}-{hi} givens"
    print(
        f"sudoku: generating {total} unique puzzles ({givens}, {args.workers} worker(s)); "
        "Ctrl-C stops without writing anything.",
        file=sys.stderr,
        flush=True,
    )
    if hi <= _RARE_GIVENS:
        print(
            f"sudoku: puzzles with at most {hi} givens are rare (removing clues at random stops "
            "at 21-27 givens), so each may take thousands of attempts (~14 ms each) and fail "
            f"after --max-attempts {args.max_attempts}; --min-givens {lo} --max-givens 24 is "
            "much faster.",
            file=sys.stderr,
            flush=True,
        )


def _cmd_build(args: argparse.Namespace) -> int:
    common.check_out(args.out, args.overwrite)
    lo, hi = _givens_range(args)
    if args.num_train < 1 or args.num_test < 0:
        raise InputError("expected --num-train >= 1 and --num-test >= 0")
    if args.min_rating < 0 or (args.max_rating is not None and args.max_rating < args.min_rating):
        raise InputError("expected 0 <= --min-rating <= --max-rating")
    if args.workers < 1 or args.materialize < 0 or args.max_attempts < 1:
        raise InputError("expected --workers >= 1, --materialize >= 0 and --max-attempts >= 1")
    mix = _givens_mix(args.givens_mix)
    spec = GenSpec(lo, hi, args.min_rating, args.max_rating, args.max_attempts, mix)
    total = args.num_train + args.num_test
    if not args.quiet:
        _announce(total, lo, hi, args)
    t0 = time.perf_counter()
    recs, used = generate_many(args.seed, total, spec, args.workers, quiet=args.quiet)
    dt = time.perf_counter() - t0

    def records(rs: list) -> Records:
        return Records([r[0] for r in rs], [r[1] for r in rs], [r[2] for r in rs])

    train = records(recs[: args.num_train])
    test = records(recs[args.num_train :]) if args.num_test else None
    attempts = sum(r[4] for r in recs)
    metadata = {
        "source": "generated",
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "filters": {
            "min_givens": lo,
            "max_givens": hi,
            "min_rating": args.min_rating,
            "max_rating": args.max_rating,
        },
        "rating_definition": "guesses (branching decisions) of data_gen.sudoku's solver",
        "materialize": args.materialize,
        "counts": {
            "train": args.num_train,
            "test": args.num_test,
            "indices_used": used,
            "attempts": attempts,
        },
    }
    if mix is not None:
        metadata["givens_mix"] = {"lo": mix[0], "hi": mix[1], "per_puzzle": MIX_STREAM}
    write_dataset(
        args.out, train, test, materialize=args.materialize, seed=args.seed, metadata=metadata
    )
    givens = [81 - p.count(".") for p in train.puzzles + (test.puzzles if test else [])]
    _print_summary(
        args.out,
        train,
        test,
        [
            f"generated {total} puzzles in {dt:.1f} s ({total / dt:.1f} puzzles/s, "
            f"{attempts / total:.2f} attempts per puzzle, {args.workers} worker(s))",
            f"givens: min {min(givens)}, mean {sum(givens) / len(givens):.1f}, max {max(givens)}",
            f"train examples: {args.num_train * (1 + args.materialize)}",
        ],
    )
    return 0


def _cmd_from_csv(args: argparse.Namespace) -> int:
    common.check_out(args.out, args.overwrite)
    if args.subsample_size is not None and args.subsample_size < 1:
        raise InputError("expected --subsample-size >= 1")
    if args.materialize < 0:
        raise InputError("expected --materialize >= 0")
    train = read_csv(args.csv, args.min_rating, args.subsample_size, args.seed)
    if not train.puzzles:
        raise InputError(f"{args.csv}: no rows left after the rating filter; expected at least one")
    test = None
    if args.test_csv:
        test = read_csv(args.test_csv, args.min_rating, args.test_subsample_size, args.seed + 1)
    metadata = {
        "source": "csv",
        "csv": os.path.basename(args.csv),
        "test_csv": os.path.basename(args.test_csv) if args.test_csv else None,
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "filters": {"min_rating": args.min_rating, "subsample_size": args.subsample_size},
        "rating_definition": "the CSV's rating column (tdoku backtracks for Sudoku-Extreme)",
        "materialize": args.materialize,
        "counts": {"train": len(train.puzzles), "test": len(test.puzzles) if test else 0},
    }
    if test is not None:
        metadata["counts"]["train_test_overlap"] = len(set(train.puzzles) & set(test.puzzles))
    write_dataset(
        args.out,
        train,
        test,
        materialize=args.materialize,
        seed=args.seed,
        metadata=metadata,
        rating_name="source_rating_histogram",
    )
    _print_summary(
        args.out, train, test, [f"train examples: {len(train.puzzles) * (1 + args.materialize)}"]
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    result = bench(args.seconds, args.seed)
    print(_bench_table(result))
    print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="python -m data_gen.sudoku", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="generate unique puzzles and write a dataset")
    b.add_argument("--out", required=True, help="dataset directory")
    b.add_argument("--num-train", type=int, default=1000)
    b.add_argument("--num-test", type=int, default=1000)
    b.add_argument("--min-rating", type=int, default=0, help="keep puzzles with rating >= R")
    b.add_argument("--max-rating", type=int, default=None, help="keep puzzles with rating <= R")
    b.add_argument("--givens", type=int, default=None, help="remove clues only down to G givens")
    b.add_argument("--min-givens", type=int, default=None, help="stop removing clues at this")
    b.add_argument("--max-givens", type=int, default=None, help="drop puzzles with more givens")
    b.add_argument(
        "--givens-mix",
        default=None,
        metavar="LO-HI",
        help="mixed difficulty: each puzzle gets G givens, G uniform on [LO, HI] per puzzle",
    )
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    b.add_argument("--materialize", type=int, default=0, help="N shuffled copies per original")
    b.add_argument("--max-attempts", type=int, default=20000, help="per puzzle, before giving up")
    b.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    common.add_overwrite(b)
    b.set_defaults(func=_cmd_build)

    s = sub.add_parser("solve", help="solve puzzles, one per line (FILE or stdin)")
    s.add_argument("file", nargs="?", default=None)
    s.set_defaults(func=_cmd_solve)

    c = sub.add_parser("from-csv", help="dataset from the Sudoku-Extreme CSV layout")
    c.add_argument("--csv", required=True, help="train CSV (source,question,answer,rating)")
    c.add_argument("--test-csv", default=None, help="test CSV (same layout)")
    c.add_argument("--out", required=True)
    c.add_argument("--subsample-size", type=int, default=None, help="train rows to keep")
    c.add_argument("--test-subsample-size", type=int, default=None, help="test rows to keep")
    c.add_argument("--min-rating", type=int, default=None, help="keep rows with rating >= R")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--materialize", type=int, default=0, help="N shuffled copies per original")
    common.add_overwrite(c)
    c.set_defaults(func=_cmd_from_csv)

    m = sub.add_parser("bench", help="generation and solving speed per rating level")
    m.add_argument("--seconds", type=float, default=10.0)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=_cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_main("sudoku", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
