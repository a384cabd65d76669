"""Grain pipelines: the reference's train sampler with on-the-fly augmentation, and test batches.

Train (reference §2): iteration ``i`` (from 1) covers ``epochs_per_iter`` epochs; its group order
is the concatenation of ``epochs_per_iter`` permutations of all groups drawn from
``Generator(Philox(seed + i))``. A global batch is filled by walking that order: for each group one
puzzle (version) is chosen uniformly, and all its examples are taken in random order, the last
puzzle truncated to the space left (its remainder is dropped). An iteration ending with a short
batch drops it. The choices inside batch ``b`` of iteration ``i``, and its augmentation draws, come
from a Philox generator seeded by ``(seed, i, b)``, so every batch is a pure function of
(seed, iteration, batch, cursor) -- the iterator state -- and a restored iterator continues exactly.
Augmentation parameters are drawn for the whole global batch, so the global batch does not depend
on the number of processes; each process then builds only its rows
``[process_index * B_local, (process_index + 1) * B_local)``.

On-the-fly augmentation follows the split's ``augmentation`` metadata (see
``trm_jax.data.dataset``): ``sudoku`` (a fresh shuffle per sampled example), ``dihedral`` (a fresh
dihedral id per sampled example) or ``arc`` (the stored per-version parameters: colour map,
dihedral, translation). Reference-layout datasets are read as stored. Collation (reference §2):
int32 arrays, labels equal to ``ignore_label_id`` become -100.

The sampler is a custom Grain ``IterDataset`` rather than ``MapDataset.shuffle().batch()``:
the reference draws whole puzzles (variable numbers of examples, the last one truncated) per
group, which a per-example shuffle cannot express, and augmenting a whole batch with one set of
index gathers is what makes it fast. ``train_iterator`` adds Grain's thread prefetch on top.

Curriculum (``Curriculum``, a trm_jax extension; none by default, as the reference): instead of
the epoch order, batch ``b`` (counted from the start of training) draws its groups uniformly from
the easiest ``ceil(G * min(1, start + (1 - start) * b / batches))`` of the ``G`` groups, ranked by
the curriculum's key (``givens``: Sudoku puzzles with more givens first), so the pool grows from a
``start`` fraction to the whole split over ``batches`` batches and is uniform over every group
after that. The draws come from the same per-batch Philox generator, so the state (the batch
count) still resumes exactly.

Test batches: sequential over all examples in global chunks; the last chunk is padded with
inputs = pad_id, labels = -100, puzzle_identifiers = blank, ``valid`` False and
``example_index`` -1. Only the deterministic ``arc`` augmentation is applied to test splits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from trm_jax.data import augment as aug
from trm_jax.data import dataset as ds

IGNORE_LABEL = -100
_STATE_VERSION = 1
CURRICULUM_KEYS = ("givens",)


@dataclasses.dataclass(frozen=True)
class Curriculum:
    """Easy-to-hard sampling: the pool of the ``start`` fraction of easiest groups (by ``key``)
    grows linearly to every group over the first ``batches`` training batches."""

    key: str = "givens"
    start: float = 0.25
    batches: int = 400

    def __post_init__(self):
        if self.key not in CURRICULUM_KEYS:
            raise ValueError(f"curriculum key must be one of {CURRICULUM_KEYS}, got {self.key!r}.")
        if not 0.0 < self.start <= 1.0:
            raise ValueError(f"curriculum start must be in (0, 1], got {self.start}.")
        if self.batches < 1:
            raise ValueError(f"curriculum batches must be >= 1, got {self.batches}.")

    def pool(self, num_groups: int, batch: int) -> int:
        """How many of the easiest groups batch ``batch`` (from 0) draws from."""
        frac = min(1.0, self.start + (1.0 - self.start) * batch / self.batches)
        return max(1, min(num_groups, int(np.ceil(num_groups * frac - 1e-9))))


def easy_first(source: _Source, key: str) -> np.ndarray:
    """Group ids from easiest to hardest by ``key`` (ties by group id). ``givens``: Sudoku
    groups by the givens of their first example (digit tokens 2..10), most first."""
    if key == "givens":
        if source.kind != "sudoku":
            raise ds.DatasetError(
                f"{source.split.path}: curriculum 'givens' needs a Sudoku dataset."
            )
        first = source.puzzle_indices[source.group_indices[:-1]]
        givens = (np.asarray(source._inputs[first]) > 1).sum(axis=1)
        return np.lexsort((np.arange(len(givens)), -givens)).astype(np.int32)
    raise ValueError(f"curriculum key must be one of {CURRICULUM_KEYS}, got {key!r}.")


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What the trainer needs to know about a split (as the sampler sees it)."""

    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    total_groups: int
    mean_puzzle_examples: float
    total_puzzles: int
    task: str | None
    augmentation: dict | None
    num_examples: int


class _Source:
    """The sampler's view of a split (groups -> puzzles -> examples) and example fetching."""

    def __init__(self, split: ds.Split):
        self.split = split
        m = split.metadata
        self.meta = m
        a = split.augmentation
        self.kind = a["kind"] if a else None
        if self.kind == "sudoku" and m["vocab_size"] != 11:
            raise ds.DatasetError(
                f"{split.path}: augmentation 'sudoku' needs the Sudoku vocabulary (11 tokens)."
            )
        if self.kind == "arc":
            e = split.extra
            self.group_indices = np.asarray(e["aug_puzzle_indices"], dtype=np.int64)
            self.puzzle_indices = np.asarray(e["aug_example_indices"], dtype=np.int64)
            self.puzzle_identifiers = np.asarray(e["aug_puzzle_identifiers"], dtype=np.int32)
            g = len(self.group_indices) - 1
            self._version_group = np.repeat(np.arange(g), np.diff(self.group_indices))
            self._base_start = np.asarray(split.puzzle_indices, dtype=np.int64)
            self._tids = np.asarray(e["aug_dihedral"])
            self._perms = np.asarray(e["aug_colour_perm"])
            self._offsets = np.asarray(e["aug_translation"])
            self._inputs = np.asarray(split.inputs)  # originals only: small
            self._labels = np.asarray(split.labels)
            self._in_dims = aug.arc_grid_dims(self._inputs)
            self._lab_dims = aug.arc_grid_dims(self._labels)
        else:
            self.group_indices = np.asarray(split.group_indices, dtype=np.int64)
            self.puzzle_indices = np.asarray(split.puzzle_indices, dtype=np.int64)
            self.puzzle_identifiers = np.asarray(split.puzzle_identifiers, dtype=np.int32)
            self._inputs = split.inputs
            self._labels = split.labels
        self.num_groups = len(self.group_indices) - 1
        self.num_examples = int(self.puzzle_indices[-1])

    def fetch(self, examples: np.ndarray, puzzles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 inputs and labels of the given examples (with their puzzles), ARC-augmented."""
        if self.kind != "arc":
            return np.asarray(self._inputs[examples]), np.asarray(self._labels[examples])
        base = self._base_start[self._version_group[puzzles]] + (
            examples - self.puzzle_indices[puzzles]
        )
        t, p, o = self._tids[puzzles], self._perms[puzzles], self._offsets[examples]
        x = aug.arc_augment_batch(
            self._inputs[base], t, p, o, (self._in_dims[0][base], self._in_dims[1][base])
        )
        y = aug.arc_augment_batch(
            self._labels[base], t, p, o, (self._lab_dims[0][base], self._lab_dims[1][base])
        )
        return x, y

    def collate(
        self, inputs: np.ndarray, labels: np.ndarray, identifiers: np.ndarray
    ) -> dict[str, np.ndarray]:
        labels = labels.astype(np.int32)
        ignore = self.meta["ignore_label_id"]
        if ignore is not None:
            labels[labels == ignore] = IGNORE_LABEL
        return {
            "inputs": inputs.astype(np.int32),
            "labels": labels,
            "puzzle_identifiers": identifiers.astype(np.int32),
        }


def _local_batch(global_batch_size: int, process_index: int, process_count: int) -> int:
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}.")
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index must be in [0, process_count={process_count}), got {process_index}."
        )
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be divisible by process_count "
            f"{process_count}."
        )
    return global_batch_size // process_count


def _metadata(split: ds.Split) -> Metadata:
    m = split.metadata
    num_examples = (
        int(split.extra["aug_example_indices"][-1])
        if split.augmentation and split.augmentation["kind"] == "arc"
        else int(split.inputs.shape[0])
    )
    return Metadata(
        vocab_size=int(m["vocab_size"]),
        seq_len=int(m["seq_len"]),
        num_puzzle_identifiers=int(m["num_puzzle_identifiers"]),
        pad_id=int(m["pad_id"]),
        ignore_label_id=None if m["ignore_label_id"] is None else int(m["ignore_label_id"]),
        blank_identifier_id=int(m["blank_identifier_id"]),
        total_groups=int(m["total_groups"]),
        mean_puzzle_examples=float(m["mean_puzzle_examples"]),
        total_puzzles=int(m["total_puzzles"]),
        task=m.get("task"),
        augmentation=split.augmentation,
        num_examples=num_examples,
    )


def load_metadata(data_dir: str | os.PathLike, split: str = "train") -> Metadata:
    """Metadata of ``<data_dir>/<split>`` (our format or the reference layout)."""
    return _metadata(ds.load_split(data_dir, split))


# --------------------------------------------------------------------------------------------
# Train


class TrainIterator(grain.DatasetIterator):
    """Infinite iterator over this process's rows of the reference sampler's global batches.

    State (``get_state``): ``{"iteration", "batch", "cursor"}`` plus the settings it belongs to;
    a JSON-serialisable dict of ints.
    """

    def __init__(
        self,
        source: _Source,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int,
        process_count: int,
        epochs_per_iter: int,
        curriculum: Curriculum | None = None,
    ):
        super().__init__()
        self._src = source
        self._gbs = global_batch_size
        self._local = _local_batch(global_batch_size, process_index, process_count)
        self._lo = process_index * self._local
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}.")
        if epochs_per_iter < 1:
            raise ValueError(f"epochs_per_iter must be >= 1, got {epochs_per_iter}.")
        if source.num_groups < 1:
            raise ds.DatasetError(f"{source.split.path} has no groups to sample from.")
        self._seed = seed
        self._epochs = epochs_per_iter
        self._iteration, self._batch, self._cursor = 1, 0, 0
        self._order: np.ndarray | None = None
        self._order_iteration = -1
        self._curriculum = curriculum
        self._easy = easy_first(source, curriculum.key) if curriculum else None

    # -- state
    def _settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": _STATE_VERSION,
            "seed": self._seed,
            "global_batch_size": self._gbs,
            "epochs_per_iter": self._epochs,
        }
        if self._curriculum:  # only then: states saved without one still match
            out["curriculum"] = dataclasses.asdict(self._curriculum)
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            "iteration": self._iteration,
            "batch": self._batch,
            "cursor": self._cursor,
            **self._settings(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        want = self._settings()
        got = {k: state.get(k) for k in (*want, "curriculum") if k in want or k in state}
        if got != want:
            raise ValueError(f"iterator state {got} belongs to another pipeline (expected {want}).")
        self._iteration = int(state["iteration"])
        self._batch = int(state["batch"])
        self._cursor = int(state["cursor"])

    # -- sampling
    def _group_order(self, iteration: int, rng: np.random.Generator) -> np.ndarray:
        if self._curriculum:
            # One batch's order: the current pool in random order, repeated to fill the batch.
            k = self._curriculum.pool(self._src.num_groups, self._batch)
            reps = -(-self._gbs // k)
            return np.concatenate([self._easy[rng.permutation(k)] for _ in range(reps)])
        if self._order_iteration != iteration:
            rng = np.random.Generator(np.random.Philox(self._seed + iteration))
            g = self._src.num_groups
            order = np.empty((self._epochs, g), dtype=np.int32)
            for e in range(self._epochs):
                order[e] = rng.permutation(g)
            self._order = order.reshape(-1)
            self._order_iteration = iteration
        return self._order

    def _fill(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(example ids, puzzle ids, new cursor) of the next global batch, or None at the end."""
        src, order = self._src, self._group_order(self._iteration, rng)
        cursor = 0 if self._curriculum else self._cursor  # a curriculum order is one batch's
        gi, pi = src.group_indices, src.puzzle_indices
        examples, puzzles = [], []
        space = self._gbs
        while space > 0:
            if cursor >= len(order):
                return None
            chunk = order[cursor : cursor + space]
            picks = gi[chunk] + rng.integers(0, gi[chunk + 1] - gi[chunk])
            counts = pi[picks + 1] - pi[picks]
            used = min(int(np.searchsorted(np.cumsum(counts), space)) + 1, len(chunk))
            picks, counts = picks[:used], counts[:used]
            cursor += used
            total = int(counts.sum())
            owner = np.repeat(np.arange(used), counts)
            within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            shuffle = np.lexsort((rng.random(total), owner))
            take = min(total, space)
            examples.append((pi[picks][owner] + within)[shuffle][:take])
            puzzles.append(picks[owner][shuffle][:take])
            space -= take
        return np.concatenate(examples), np.concatenate(puzzles), cursor

    def __next__(self) -> dict[str, np.ndarray]:
        self._assert_not_closed()
        while True:
            key = np.random.SeedSequence([self._seed, self._iteration, self._batch])
            rng = np.random.Generator(np.random.Philox(key))
            filled = self._fill(rng)
            if filled is not None:
                break
            if self._batch == 0:
                raise ValueError(
                    f"global_batch_size {self._gbs} exceeds the examples of one iteration "
                    f"({self._epochs} epoch(s)); use a smaller batch or more epochs_per_iter."
                )
            self._iteration, self._batch, self._cursor = self._iteration + 1, 0, 0
        examples, puzzles, cursor = filled
        self._cursor = 0 if self._curriculum else cursor
        self._batch += 1

        src = self._src
        lo, hi = self._lo, self._lo + self._local
        x, y = src.fetch(examples[lo:hi], puzzles[lo:hi])
        if src.kind == "sudoku":
            index, digit_map = aug.sudoku_shuffle_params(rng, self._gbs)
            index, digit_map = index[lo:hi], digit_map[lo:hi]
            x = aug.sudoku_shuffle_tokens(x, index, digit_map)
            y = aug.sudoku_shuffle_tokens(y, index, digit_map)
        elif src.kind == "dihedral":
            tids = rng.integers(0, aug.NUM_DIHEDRAL, self._gbs)[lo:hi]
            x, y = aug.dihedral_batch(x, tids), aug.dihedral_batch(y, tids)
        return src.collate(x, y, src.puzzle_identifiers[puzzles[lo:hi]])


class TrainDataset(grain.IterDataset):
    """Grain ``IterDataset`` whose iterators are :class:`TrainIterator`."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", **kwargs):
        super().__init__()
        self._source = _Source(ds.load_split(data_dir, split))
        self._kwargs = kwargs
        TrainIterator(self._source, **kwargs)  # validate the settings now

    def __iter__(self) -> TrainIterator:
        return TrainIterator(self._source, **self._kwargs)


def train_iterator(
    data_dir: str | os.PathLike,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    split: str = "train",
    epochs_per_iter: int = 1,
    prefetch: int = 2,
    curriculum: Curriculum | None = None,
) -> grain.DatasetIterator:
    """Infinite train iterator: dicts of ``inputs`` int32[B_local, L], ``labels`` int32[B_local, L]
    (-100 where ignored) and ``puzzle_identifiers`` int32[B_local].

    ``epochs_per_iter`` is the reference's iteration length (its ``eval_interval``): the short
    batch at the end of each iteration is dropped. ``prefetch`` batches are prepared in a
    background thread (0: none). ``get_state()`` / ``set_state()`` save and restore the position.
    ``curriculum``: easy-to-hard sampling (module docstring) instead of the epoch order.
    """
    dataset: grain.IterDataset = TrainDataset(
        data_dir,
        split,
        global_batch_size=global_batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        epochs_per_iter=epochs_per_iter,
        curriculum=curriculum,
    )
    if prefetch > 0:
        dataset = grain.experimental.ThreadPrefetchIterDataset(
            dataset, prefetch_buffer_size=prefetch
        )
    return iter(dataset)


# --------------------------------------------------------------------------------------------
# Test


def eval_batches(
    data_dir: str | os.PathLike,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    split: str = "test",
) -> Iterator[dict[str, np.ndarray]]:
    """Finite pass over all examples of ``split`` in order, this process's rows of each global
    chunk; keys of the train batches plus ``valid`` bool[B_local] and ``example_index``
    int32[B_local] (-1 for padding). Every process gets the same number of batches.
    """
    local = _local_batch(global_batch_size, process_index, process_count)
    src = _Source(ds.load_split(data_dir, split))
    return _eval_gen(src, global_batch_size, local, process_index * local)


def _eval_gen(src: _Source, gbs: int, local: int, lo: int) -> Iterator[dict[str, np.ndarray]]:
    m = src.meta
    seq_len = m["seq_len"]
    for start in range(0, src.num_examples, gbs):
        rows = np.arange(start + lo, min(start + lo + local, src.num_examples), dtype=np.int64)
        n = len(rows)
        puzzles = np.searchsorted(src.puzzle_indices, rows, side="right") - 1
        x, y = src.fetch(rows, puzzles)
        batch = src.collate(x, y, src.puzzle_identifiers[puzzles])
        if n < local:
            pad = local - n
            batch["inputs"] = np.concatenate(
                [batch["inputs"], np.full((pad, seq_len), m["pad_id"], np.int32)]
            )
            batch["labels"] = np.concatenate(
                [batch["labels"], np.full((pad, seq_len), IGNORE_LABEL, np.int32)]
            )
            batch["puzzle_identifiers"] = np.concatenate(
                [batch["puzzle_identifiers"], np.full(pad, m["blank_identifier_id"], np.int32)]
            )
        batch["valid"] = np.arange(local) < n
        batch["example_index"] = np.concatenate([rows, np.full(local - n, -1)]).astype(np.int32)
        yield batch
