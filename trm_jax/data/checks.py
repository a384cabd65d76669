"""The checks behind :mod:`trm_jax.data.dataset`: its error, array and metadata validation, the
ARC version table, and the check that stored tokens lie inside the vocabulary.

Imported (and re-exported) by :mod:`trm_jax.data.dataset`; nothing here reads or writes files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

ARC_CANVAS_FIELD = "canvas_side"
ARC_DEFAULT_SIDE = 30
ARC_AUG_ARRAYS = (
    "aug_puzzle_indices",
    "aug_puzzle_identifiers",
    "aug_example_indices",
    "aug_dihedral",
    "aug_colour_perm",
    "aug_translation",
)


class DatasetError(ValueError):
    """A dataset on disk, or arrays given to the writer, are missing, malformed or inconsistent."""


def _fail(msg: str) -> None:
    raise DatasetError(msg)


def _as_int_array(name: str, a: Any, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        _fail(f"{name} must be an integer array, got dtype {a.dtype}.")
    if a.ndim != ndim:
        _fail(f"{name} must have {ndim} dimension(s), got shape {a.shape}.")
    return a


def _check_offsets(name: str, a: np.ndarray, end: int, what: str, strict: bool) -> None:
    if a.shape[0] < 1 or a[0] != 0:
        _fail(f"{name} must start at 0, got {a[:1].tolist()}.")
    if a[-1] != end:
        _fail(f"{name} must end at the number of {what} ({end}), got {int(a[-1])}.")
    d = np.diff(a.astype(np.int64))
    if strict and np.any(d <= 0):
        _fail(f"{name} must be strictly increasing (no empty ranges).")
    if not strict and np.any(d < 0):
        _fail(f"{name} must be non-decreasing.")


def _check_int(name: str, v: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        _fail(f"{name} must be an integer, got {v!r}.")
    v = int(v)
    if v < lo or (hi is not None and v >= hi):
        rng = f"[{lo}, {hi})" if hi is not None else f">= {lo}"
        _fail(f"{name} must be in {rng}, got {v}.")
    return v


def _json_ok(name: str, v: Any) -> None:
    try:
        json.dumps(v, allow_nan=False)
    except (TypeError, ValueError) as e:
        _fail(f"{name} must be JSON-serialisable ({e}).")


def _check_tokens(name: str, a: np.ndarray, vocab_size: int) -> None:
    if a.size and (int(a.min()) < 0 or int(a.max()) >= vocab_size):
        _fail(
            f"{name} must hold token ids in [0, {vocab_size}), "
            f"got values in [{int(a.min())}, {int(a.max())}]."
        )


def arc_canvas_side(metadata: Mapping[str, Any]) -> int:
    """The canvas side of an ARC split's metadata (30 when the field is absent)."""
    side = metadata.get(ARC_CANVAS_FIELD, ARC_DEFAULT_SIDE)
    if isinstance(side, bool) or not isinstance(side, int | np.integer) or side < 1:
        _fail(f"{ARC_CANVAS_FIELD} must be a positive integer, got {side!r}.")
    return int(side)


def arc_virtual_counts(
    group_indices: np.ndarray,
    puzzle_indices: np.ndarray,
    extra: Mapping[str, np.ndarray],
    side: int = ARC_DEFAULT_SIDE,
) -> tuple[int, int]:
    """Checks an ARC version table and returns (number of versions, number of virtual examples).

    The stored arrays hold each original puzzle once (one group = one puzzle = the original's
    examples at offset (0, 0)). The version table describes the augmented dataset the sampler sees:

    - ``aug_puzzle_indices`` int32[G+1]: group -> range of versions (version 0 first);
    - ``aug_puzzle_identifiers`` int32[V]: identifier of each version;
    - ``aug_example_indices`` int32[V+1]: version -> range of virtual examples; version v of group
      g has as many examples as the original, in the original's order;
    - ``aug_dihedral`` uint8[V]: dihedral id (0..7) applied after the colour map;
    - ``aug_colour_perm`` uint8[V, 10]: colour map c -> perm[c], with perm[0] == 0;
    - ``aug_translation`` uint8[E, 2]: (row, col) offset of each virtual example in the
      ``side`` x ``side`` canvas.
    """
    for k in ARC_AUG_ARRAYS:
        if k not in extra:
            _fail(f"augmentation kind 'arc' needs the extra array '{k}', which is missing.")
    g = len(group_indices) - 1
    if not np.array_equal(np.asarray(group_indices), np.arange(g + 1)):
        _fail("augmentation kind 'arc' needs exactly one stored puzzle (the original) per group.")
    api = _as_int_array("aug_puzzle_indices", extra["aug_puzzle_indices"], 1)
    if api.shape[0] != g + 1:
        _fail(f"aug_puzzle_indices must have {g + 1} entries (groups + 1), got {api.shape[0]}.")
    v = int(api[-1])
    _check_offsets("aug_puzzle_indices", api, v, "versions", strict=True)
    aei = _as_int_array("aug_example_indices", extra["aug_example_indices"], 1)
    if aei.shape[0] != v + 1:
        _fail(f"aug_example_indices must have {v + 1} entries (versions + 1), got {aei.shape[0]}.")
    e = int(aei[-1])
    _check_offsets("aug_example_indices", aei, e, "virtual examples", strict=False)
    base_counts = np.diff(np.asarray(puzzle_indices, dtype=np.int64))
    version_group = np.repeat(np.arange(g), np.diff(api.astype(np.int64)))
    if not np.array_equal(np.diff(aei.astype(np.int64)), base_counts[version_group]):
        _fail("aug_example_indices must give every version as many examples as its original.")
    shapes = {
        "aug_puzzle_identifiers": (v,),
        "aug_dihedral": (v,),
        "aug_colour_perm": (v, 10),
        "aug_translation": (e, 2),
    }
    for k, shape in shapes.items():
        a = np.asarray(extra[k])
        if a.shape != shape:
            _fail(f"{k} must have shape {shape}, got {a.shape}.")
    dih = np.asarray(extra["aug_dihedral"])
    if v and (int(dih.min()) < 0 or int(dih.max()) > 7):
        _fail("aug_dihedral must hold dihedral ids in 0..7.")
    perm = np.asarray(extra["aug_colour_perm"])
    if v and not (
        np.all(perm[:, 0] == 0) and np.all(np.sort(perm, axis=1) == np.arange(10)[None, :])
    ):
        _fail("aug_colour_perm rows must be permutations of 0..9 that keep 0 fixed.")
    tr = np.asarray(extra["aug_translation"])
    if e and (int(tr.min()) < 0 or int(tr.max()) >= side):
        _fail(f"aug_translation must hold offsets in 0..{side - 1}.")
    return v, e


# Token arrays already checked, by (file, size, modification time): a split is loaded several
# times per run (metadata, train iterator, evaluations) and the check reads every byte.
_CHECKED: set = set()
_CHUNK = 1 << 24


def check_stored_tokens(name: str, a: np.ndarray, vocab_size: int, key=None) -> None:
    """Refuse a stored token array with an id outside ``[0, vocab_size)`` (one sentence), read in
    chunks; ``key`` (file identity) skips arrays already checked."""
    if key is not None and key in _CHECKED:
        return
    flat = a.reshape(-1)
    lo, hi = vocab_size, 0
    for start in range(0, flat.shape[0], _CHUNK):
        part = np.asarray(flat[start : start + _CHUNK])
        lo, hi = min(lo, int(part.min())), max(hi, int(part.max()))
    if flat.shape[0] and (lo < 0 or hi >= vocab_size):
        _fail(
            f"{name} holds token ids in [{lo}, {hi}], outside the vocabulary [0, {vocab_size}) "
            "of dataset.json."
        )
    if key is not None:
        _CHECKED.add(key)
