"""ARC-AGI scoring: undo augmentations, vote over augmented copies, pass@K and a Kaggle submission.

Reference: docs/reference-trm.md §6 (evaluators/arc.py of the official PyTorch code). Every test
input of an evaluation puzzle appears in the test split in up to 1001 augmented versions (dihedral
transform + colour permutation, §1.4). For each row of a batch we crop the predicted grid out of
its 30x30 canvas, map it back to the original puzzle's orientation and colours, and record one vote
for it under (original puzzle name, hash of the de-augmented input). Distinct predicted grids are
ranked by vote count, ties broken by the mean ``sigmoid(q_halt_logit)`` of their votes; pass@K
counts a test pair as solved when its label is among the top K. The headline ARC number of the
paper is ``ARC/pass@2``.

One deliberate difference from the reference (§8 item 12): the reference's evaluator never clears
its votes between evaluation rounds (``aggregated_voting=True``), so its final score silently pools
the votes of every checkpoint evaluated so far. Here an ``ArcVoter`` holds the votes of one
evaluation only; to ensemble several rounds or checkpoints, merge their voters explicitly with
``ArcVoter.merge``.

Pure numpy; nothing here needs jax (arrays from jax are accepted and converted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trm_jax.data import tokens as tok
from trm_jax.data.augment import invert_arc_augmentation

__all__ = [
    "ArcVoter",
    "crop",
    "crop_batch",
    "grid_hash",
    "inverse_augment",
    "parse_identifier",
]

_SEPARATOR = "|||"
_IDENTITY_PERM = np.arange(10, dtype=np.uint8)

DEFAULT_PASS_KS = (1, 2, 5, 10, 100, 1000)


# --------------------------------------------------------------------------------------------------
# Names, crops, inverse augmentation, hashes


def parse_identifier(name: str) -> tuple[str, int, np.ndarray]:
    """Split an ARC puzzle name into ``(original name, dihedral id, colour map)``.

    Augmented names are ``"<orig_id>|||t<tid>|||<10 digits>"`` where digit ``c`` is the colour
    that original colour ``c`` was mapped to (§1.4). A name without ``|||`` is un-augmented:
    ``(name, 0, identity)``.
    """
    if _SEPARATOR not in name:
        return name, 0, _IDENTITY_PERM.copy()
    parts = name.split(_SEPARATOR)
    perm_digits = parts[-1] if len(parts) == 3 else ""
    valid = (
        len(parts) == 3
        and parts[1][:1] == "t"
        and parts[1][1:].isdigit()
        and 0 <= int(parts[1][1:]) <= 7
        and len(perm_digits) == 10
        and perm_digits.isdigit()
        and sorted(perm_digits) == list("0123456789")
    )
    if not valid:
        raise ValueError(
            f"ARC puzzle name {name!r} is malformed: expected '<orig_id>|||t<0-7>|||<10 digits "
            "forming a permutation of 0-9>'."
        )
    perm = np.array([int(c) for c in perm_digits], dtype=np.uint8)
    return parts[0], int(parts[1][1:]), perm


# One implementation each, shared with the dataset builder (names kept for callers).
crop_batch = tok.arc_crop_batch
crop = tok.arc_crop
inverse_augment = invert_arc_augmentation


def grid_hash(grid: Any) -> str:
    """SHA-256 (hex) of a grid's shape and its colours as uint8, so equal grids hash equally."""
    grid = np.ascontiguousarray(np.asarray(grid, dtype=np.uint8))
    if grid.ndim != 2:
        raise ValueError(f"an ARC grid must be 2-D, got shape {grid.shape}.")
    shape_bytes = np.asarray(grid.shape, dtype=np.int64).tobytes()
    return hashlib.sha256(shape_bytes + grid.tobytes()).hexdigest()


def _sigmoid64(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


# --------------------------------------------------------------------------------------------------
# Voting


class ArcVoter:
    """Votes of one ARC evaluation: ``add_batch`` for every test batch, then ``result``.

    ``identifiers[i]`` is the puzzle name of identifier ``i`` (index 0 is the blank/padding id),
    as listed in the dataset's metadata. Votes are kept per original puzzle name and hash of the
    de-augmented input, as ``pred_hash -> [count, sum of q]``.

    Unlike the reference (whose evaluator keeps voting across evaluation rounds, §8 item 12), a
    voter only holds what was added to it; combine rounds, checkpoints or processes explicitly
    with ``merge``.
    """

    def __init__(self, identifiers: Sequence[str]):
        self.identifiers = list(identifiers)
        self._parsed: dict[int, tuple[str, int, np.ndarray]] = {}
        # orig name -> input hash -> pred hash -> [vote count, sum of sigmoid(q_halt_logit)]
        self.votes: dict[str, dict[str, dict[str, list[float]]]] = {}
        # pred hash -> de-augmented predicted grid
        self.grids: dict[str, np.ndarray] = {}

    def _parse(self, identifier: int) -> tuple[str, int, np.ndarray]:
        if identifier not in self._parsed:
            if not 0 < identifier < len(self.identifiers):
                raise ValueError(
                    f"puzzle identifier {identifier} is outside the {len(self.identifiers)} "
                    "identifiers this ArcVoter was built with (wrong dataset metadata?)."
                )
            self._parsed[identifier] = parse_identifier(self.identifiers[identifier])
        return self._parsed[identifier]

    def add_batch(
        self, inputs: Any, puzzle_identifiers: Any, q_halt_logits: Any, preds: Any
    ) -> None:
        """Record one vote per non-padding row.

        ``inputs`` and ``preds`` are ``[B, 900]`` token sequences, ``puzzle_identifiers`` ``[B]``
        (rows with identifier 0 are padding and ignored) and ``q_halt_logits`` ``[B]`` from the
        last supervision step; the vote's confidence is ``sigmoid(q_halt_logit)`` in float64.
        """
        identifiers = np.asarray(puzzle_identifiers).reshape(-1)
        keep = np.flatnonzero(identifiers != 0)
        if keep.size == 0:
            return
        q = _sigmoid64(np.asarray(q_halt_logits).reshape(-1)[keep])
        input_grids = crop_batch(np.asarray(inputs)[keep])
        pred_grids = crop_batch(np.asarray(preds)[keep])
        for row, identifier in enumerate(identifiers[keep].tolist()):
            orig, tid, perm = self._parse(int(identifier))
            input_hash = grid_hash(inverse_augment(input_grids[row], tid, perm))
            pred = inverse_augment(pred_grids[row], tid, perm)
            pred_hash = grid_hash(pred)
            self.grids.setdefault(pred_hash, pred)
            tally = self.votes.setdefault(orig, {}).setdefault(input_hash, {})
            count_and_q = tally.setdefault(pred_hash, [0, 0.0])
            count_and_q[0] += 1
            count_and_q[1] += float(q[row])

    def merge(self, other: ArcVoter) -> ArcVoter:
        """Adds the votes of ``other`` (another process, round or checkpoint); returns self."""
        for orig, by_input in other.votes.items():
            mine = self.votes.setdefault(orig, {})
            for input_hash, tally in by_input.items():
                my_tally = mine.setdefault(input_hash, {})
                for pred_hash, (count, q_sum) in tally.items():
                    entry = my_tally.setdefault(pred_hash, [0, 0.0])
                    entry[0] += count
                    entry[1] += q_sum
        for pred_hash, grid in other.grids.items():
            self.grids.setdefault(pred_hash, grid)
        return self

    def ranked(self, orig: str, input_grid: Any) -> list[tuple[str, int, float]]:
        """Distinct predictions for one test input, best first: ``(pred_hash, votes, mean q)``.

        Sorted by vote count, then mean q, both descending (the reference's lexicographic sort);
        remaining ties keep the order in which the grids were first voted for.
        """
        tally = self.votes.get(orig, {}).get(grid_hash(input_grid), {})
        entries = [(h, int(count), q_sum / count) for h, (count, q_sum) in tally.items()]
        return sorted(entries, key=lambda e: (e[1], e[2]), reverse=True)

    def result(
        self,
        test_puzzles: Mapping[str, Mapping[str, Any]],
        pass_ks: Sequence[int] = DEFAULT_PASS_KS,
        submission_k: int = 2,
    ) -> tuple[dict[str, float], dict[str, list[dict[str, list[list[int]]]]]]:
        """Score the votes against ``test_puzzles`` and build a Kaggle submission.

        ``test_puzzles`` is ``{orig_name: {"train": [...], "test": [{"input": grid, "output":
        grid}, ...]}}`` as the ARC builder writes to ``test_puzzles.json``. For every puzzle, the
        score at K is the fraction of its test pairs whose label is among the top K predictions
        (a pair with no votes scores 0); ``ARC/pass@K`` is the mean over puzzles.

        The submission is ``{orig_name: [{"attempt_1": grid, ..., "attempt_<submission_k>":
        grid} per test pair]}``: the top ``submission_k`` grids, padded by repeating the best one.
        A test input that received no votes at all gets ``[[0]]`` for every attempt.
        """
        scores = {k: 0.0 for k in pass_ks}
        submission: dict[str, list[dict[str, list[list[int]]]]] = {}
        for orig, puzzle in test_puzzles.items():
            pairs = puzzle["test"]
            correct = {k: 0 for k in pass_ks}
            attempts_per_pair = []
            for pair in pairs:
                ranking = [h for h, _, _ in self.ranked(orig, pair["input"])]
                if "output" in pair:
                    label_hash = grid_hash(pair["output"])
                    for k in pass_ks:
                        correct[k] += label_hash in ranking[:k]
                top = ranking[:submission_k] or [None]
                top = top + [top[0]] * (submission_k - len(top))
                attempts_per_pair.append(
                    {
                        f"attempt_{i + 1}": [[0]] if h is None else self.grids[h].tolist()
                        for i, h in enumerate(top)
                    }
                )
            submission[orig] = attempts_per_pair
            for k in pass_ks:
                scores[k] += correct[k] / len(pairs) if pairs else 0.0
        num_puzzles = max(len(test_puzzles), 1)
        metrics = {f"ARC/pass@{k}": scores[k] / num_puzzles for k in pass_ks}
        return metrics, submission
