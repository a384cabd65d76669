"""Datasets on disk: one documented format, versioned in its metadata.

A dataset is a directory ``<root>`` holding one sub-directory per split (``train``, ``test``) and,
for tasks with per-puzzle identifiers, ``<root>/identifiers.json`` (a JSON list: identifier ->
name, index 0 = ``"<blank>"``). ARC datasets also hold ``<root>/test_puzzles.json`` (the original
test-subset puzzles with their solutions, for the evaluator).

Split layout (``<root>/<split>/``), identical to the reference implementation's (reference §1.1):

- ``dataset.json``: metadata, a JSON object with the reference fields ``pad_id``,
  ``ignore_label_id`` (int or null), ``blank_identifier_id``, ``vocab_size``, ``seq_len``,
  ``num_puzzle_identifiers`` (including the blank id), ``total_groups``, ``mean_puzzle_examples``
  (examples / puzzles), ``total_puzzles`` and ``sets`` (always ``["all"]``).
- ``all__inputs.npy``, ``all__labels.npy``: ``uint8[N_examples, seq_len]`` token ids.
- ``all__puzzle_identifiers.npy``: ``int32[N_puzzles]``, one embedding id per puzzle.
- ``all__puzzle_indices.npy``: ``int32[N_puzzles + 1]``, offsets puzzle -> example range (from 0).
- ``all__group_indices.npy``: ``int32[N_groups + 1]``, offsets group -> puzzle range (from 0).

A group is one original puzzle, its puzzles are versions of it (each with its own identifier) and
a puzzle's examples are input/label pairs.

Our format adds to ``dataset.json``:

- ``"trm_jax_format": 1`` (:data:`FORMAT_VERSION`); a split without it is a reference dataset and
  is read unchanged, with no augmentation;
- ``"task"``: ``"sudoku"``, ``"maze"``, ``"arc"`` or any other name;
- ``"augmentation"``: how the reader augments examples on the fly, or null for none:

  - ``{"kind": "sudoku"}``: every sampled example gets a fresh random Sudoku shuffle (digit
    permutation with the blank fixed, transpose with probability 0.5, band/row and stack/column
    shuffles), the same for its input and label; needs ``seq_len`` 81.
  - ``{"kind": "dihedral"}``: every sampled example gets a fresh uniformly drawn dihedral transform
    of its square grid (input and label alike); needs a square ``seq_len``.
  - ``{"kind": "arc", ...}``: the stored examples are the original ARC examples at offset (0, 0);
    the augmented versions are described by the extra arrays listed in :data:`ARC_AUG_ARRAYS`
    (:func:`arc_virtual_counts` explains them). The reference fields ``total_puzzles`` and
    ``mean_puzzle_examples`` then describe the augmented versions, so the metadata equal those of
    the materialised dataset; ``stored_puzzles`` and ``stored_examples`` count what is on disk.

- ``"canvas_side"`` (ARC datasets): the side S of the square token canvas, ``seq_len = S*S``;
  grids of up to S x S fit. Datasets without the field (built before it existed, and reference
  builds) have the reference's 30x30 canvas: :func:`arc_canvas_side` reads it.

- any extra metadata fields the builder passed, and ``extra_arrays``: the names of the extra arrays
  stored as ``all__<name>.npy``.

Splits are written atomically: into a temporary sibling directory that then replaces the split, so a
crash never leaves a half-written split behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trm_jax import fileio
from trm_jax.data.checks import (  # noqa: F401 (the ARC names are part of this module's API)
    ARC_AUG_ARRAYS,
    ARC_CANVAS_FIELD,
    ARC_DEFAULT_SIDE,
    DatasetError,
    _as_int_array,
    _check_int,
    _check_offsets,
    _check_tokens,
    _fail,
    _json_ok,
    arc_canvas_side,
    arc_virtual_counts,
    check_stored_tokens,
)

FORMAT_VERSION = 1
SET_NAME = "all"
BLANK_NAME = "<blank>"
AUGMENTATION_KINDS = ("sudoku", "dihedral", "arc")
_CORE_ARRAYS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
_REFERENCE_FIELDS = (
    "pad_id",
    "ignore_label_id",
    "blank_identifier_id",
    "vocab_size",
    "seq_len",
    "num_puzzle_identifiers",
    "total_groups",
    "mean_puzzle_examples",
    "total_puzzles",
    "sets",
)
_OUR_FIELDS = (
    "trm_jax_format",
    "task",
    "augmentation",
    "extra_arrays",
    "stored_puzzles",
    "stored_examples",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split read from disk; the arrays are read-only memory maps.

    ``metadata`` is the parsed ``dataset.json``; ``extra`` maps extra array names to arrays.
    """

    path: Path
    metadata: Mapping[str, Any]
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray
    extra: Mapping[str, np.ndarray]

    @property
    def format_version(self) -> int | None:
        """Our format version, or None for a reference dataset."""
        return self.metadata.get("trm_jax_format")

    @property
    def task(self) -> str | None:
        return self.metadata.get("task")

    @property
    def augmentation(self) -> dict | None:
        return self.metadata.get("augmentation") if self.format_version is not None else None


# --------------------------------------------------------------------------------------------
# Writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(parent: Path, name: str) -> Path:
    """A temporary sibling directory for atomic writes, with ordinary (umask) permissions."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(tmp: Path, target: Path) -> None:
    """Moves the finished directory ``tmp`` to ``target``, replacing any old one."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_split(
    root: str | os.PathLike,
    split: str,
    *,
    inputs: np.ndarray,
    labels: np.ndarray,
    puzzle_identifiers: np.ndarray,
    puzzle_indices: np.ndarray,
    group_indices: np.ndarray,
    vocab_size: int,
    seq_len: int,
    num_puzzle_identifiers: int,
    task: str,
    augmentation: dict | None,
    pad_id: int = 0,
    ignore_label_id: int | None = 0,
    blank_identifier_id: int = 0,
    extra_arrays: dict[str, np.ndarray] | None = None,
    extra_metadata: dict | None = None,
) -> None:
    """Validates and atomically writes ``<root>/<split>/`` in the format of this module's docstring.

    Raises :class:`DatasetError` (a ``ValueError``) naming what is wrong; nothing is written then.
    """
    if not isinstance(split, str) or not _SPLIT_RE.match(split) or split in (".", ".."):
        _fail(f"split must be a plain directory name, got {split!r}.")
    vocab_size = _check_int("vocab_size", vocab_size, 1, 257)
    seq_len = _check_int("seq_len", seq_len, 1)
    num_puzzle_identifiers = _check_int("num_puzzle_identifiers", num_puzzle_identifiers, 1)
    pad_id = _check_int("pad_id", pad_id, 0, vocab_size)
    if ignore_label_id is not None:
        ignore_label_id = _check_int("ignore_label_id", ignore_label_id, 0, vocab_size)
    blank_identifier_id = _check_int(
        "blank_identifier_id", blank_identifier_id, 0, num_puzzle_identifiers
    )
    if not isinstance(task, str) or not task:
        _fail(f"task must be a non-empty string, got {task!r}.")

    inputs = _as_int_array("inputs", inputs, 2)
    labels = _as_int_array("labels", labels, 2)
    if inputs.shape[1] != seq_len:
        _fail(f"inputs must have shape [N, seq_len={seq_len}], got {inputs.shape}.")
    if labels.shape != inputs.shape:
        _fail(f"labels must have the shape of inputs {inputs.shape}, got {labels.shape}.")
    _check_tokens("inputs", inputs, vocab_size)
    _check_tokens("labels", labels, vocab_size)
    puzzle_identifiers = _as_int_array("puzzle_identifiers", puzzle_identifiers, 1)
    puzzle_indices = _as_int_array("puzzle_indices", puzzle_indices, 1)
    group_indices = _as_int_array("group_indices", group_indices, 1)
    n_examples, n_puzzles = inputs.shape[0], puzzle_identifiers.shape[0]
    if puzzle_indices.shape[0] != n_puzzles + 1:
        _fail(
            f"puzzle_indices must have {n_puzzles + 1} entries (puzzles + 1), "
            f"got {puzzle_indices.shape[0]}."
        )
    _check_offsets("puzzle_indices", puzzle_indices, n_examples, "examples", strict=False)
    _check_offsets("group_indices", group_indices, n_puzzles, "puzzles", strict=True)
    if n_puzzles and (
        int(puzzle_identifiers.min()) < 0 or int(puzzle_identifiers.max()) >= num_puzzle_identifiers
    ):
        n = num_puzzle_identifiers
        _fail(f"puzzle_identifiers must be in [0, num_puzzle_identifiers={n}).")

    extra_arrays = dict(extra_arrays or {})
    for k, a in extra_arrays.items():
        if not isinstance(k, str) or not _NAME_RE.match(k) or k in _CORE_ARRAYS:
            _fail(f"extra array name {k!r} must be [A-Za-z0-9_]+ and not a core array name.")
        if not isinstance(a, np.ndarray) or a.dtype == object:
            _fail(f"extra array {k!r} must be a numeric numpy array.")
    extra_metadata = dict(extra_metadata or {})
    for k in extra_metadata:
        if k in _REFERENCE_FIELDS or k in _OUR_FIELDS:
            _fail(f"extra_metadata must not set the reserved field {k!r}.")
    _json_ok("extra_metadata", extra_metadata)

    if ARC_CANVAS_FIELD in extra_metadata:
        side = arc_canvas_side(extra_metadata)
        if seq_len != side * side:
            _fail(f"a {side}x{side} canvas needs seq_len {side * side}, got {seq_len}.")

    n_groups = group_indices.shape[0] - 1
    total_puzzles, total_examples = n_puzzles, n_examples
    if augmentation is not None:
        if not isinstance(augmentation, dict) or augmentation.get("kind") not in AUGMENTATION_KINDS:
            _fail(
                f"augmentation must be None or a dict whose 'kind' is one of "
                f"{list(AUGMENTATION_KINDS)}, got {augmentation!r}."
            )
        _json_ok("augmentation", augmentation)
        kind = augmentation["kind"]
        if kind == "sudoku" and seq_len != 81:
            _fail(f"augmentation kind 'sudoku' needs seq_len 81, got {seq_len}.")
        if kind == "dihedral" and int(round(seq_len**0.5)) ** 2 != seq_len:
            _fail(f"augmentation kind 'dihedral' needs a square seq_len, got {seq_len}.")
        if kind == "arc":
            side = arc_canvas_side(extra_metadata)
            if seq_len != side * side:
                _fail(
                    f"augmentation kind 'arc' needs seq_len {side * side} (a {side}x{side} "
                    f"canvas), got {seq_len}."
                )
            total_puzzles, total_examples = arc_virtual_counts(
                group_indices, puzzle_indices, extra_arrays, side
            )
            ids = np.asarray(extra_arrays["aug_puzzle_identifiers"])
            if total_puzzles and (int(ids.min()) < 0 or int(ids.max()) >= num_puzzle_identifiers):
                _fail("aug_puzzle_identifiers must be in [0, num_puzzle_identifiers).")

    metadata: dict[str, Any] = {
        "pad_id": pad_id,
        "ignore_label_id": ignore_label_id,
        "blank_identifier_id": blank_identifier_id,
        "vocab_size": vocab_size,
        "seq_len": seq_len,
        "num_puzzle_identifiers": num_puzzle_identifiers,
        "total_groups": int(n_groups),
        "mean_puzzle_examples": float(total_examples / total_puzzles) if total_puzzles else 0.0,
        "total_puzzles": int(total_puzzles),
        "sets": [SET_NAME],
        "trm_jax_format": FORMAT_VERSION,
        "task": task,
        "augmentation": augmentation,
        "extra_arrays": sorted(extra_arrays),
        "stored_puzzles": int(n_puzzles),
        "stored_examples": int(n_examples),
        **extra_metadata,
    }

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(root, split)
    try:
        arrays = {
            "inputs": inputs.astype(np.uint8, copy=False),
            "labels": labels.astype(np.uint8, copy=False),
            "puzzle_identifiers": puzzle_identifiers.astype(np.int32, copy=False),
            "puzzle_indices": puzzle_indices.astype(np.int32, copy=False),
            "group_indices": group_indices.astype(np.int32, copy=False),
            **extra_arrays,
        }
        for k, a in arrays.items():
            np.save(tmp / f"{SET_NAME}__{k}.npy", np.ascontiguousarray(a))
        with open(tmp / "dataset.json", "w") as f:
            json.dump(metadata, f, indent=2)
        replace_dir(tmp, root / split)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_identifiers(root: str | os.PathLike, names: list[str]) -> None:
    """Atomically writes ``<root>/identifiers.json``: ``names[i]`` is identifier i's name."""
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        _fail("identifiers must be a list of strings.")
    if not names or names[0] != BLANK_NAME:
        _fail(f"identifiers must start with {BLANK_NAME!r} (identifier 0).")
    fileio.write_json(Path(root) / "identifiers.json", list(names), indent=None)


# --------------------------------------------------------------------------------------------
# Reading


def load_identifiers(root: str | os.PathLike) -> list[str]:
    """Reads ``<root>/identifiers.json``."""
    path = Path(root) / "identifiers.json"
    if not path.is_file():
        _fail(f"{path} does not exist; expected the identifier names of the dataset.")
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}).") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        _fail(f"{path} must hold a JSON list of strings.")
    return names


def _load_array(path: Path, name: str) -> np.ndarray:
    f = path / f"{SET_NAME}__{name}.npy"
    if not f.is_file():
        _fail(f"{f} does not exist; every split needs all__{name}.npy.")
    try:
        return np.load(f, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DatasetError(f"{f} is not a readable .npy array ({e}).") from None


def load_split(root: str | os.PathLike, split: str) -> Split:
    """Reads ``<root>/<split>/`` (our format or the reference layout) and checks its consistency.

    Arrays are memory-mapped read-only. Raises :class:`DatasetError` with one sentence on a missing
    directory or file, malformed JSON or inconsistent arrays.
    """
    path = Path(root) / split
    if not path.is_dir():
        _fail(f"{path} does not exist or is not a directory; expected a dataset split there.")
    meta_path = path / "dataset.json"
    if not meta_path.is_file():
        _fail(f"{meta_path} does not exist; every split needs its metadata file.")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path} is not valid JSON ({e}).") from None
    if not isinstance(meta, dict):
        _fail(f"{meta_path} must hold a JSON object.")
    required = [k for k in _REFERENCE_FIELDS if k not in meta]
    if required:
        _fail(f"{meta_path} lacks the field(s) {required}.")
    version = meta.get("trm_jax_format")
    if version is not None and version != FORMAT_VERSION:
        _fail(f"{meta_path} has trm_jax_format {version!r}; this code reads {FORMAT_VERSION}.")

    names = meta.get("extra_arrays") or []
    bad = (
        names
        if not isinstance(names, list)
        else [n for n in names if not isinstance(n, str) or not _NAME_RE.match(n)]
    )
    if bad:  # a name becomes part of a file path: no '/' or '..'
        _fail(f"{meta_path} lists extra_arrays {bad!r}; names must be [A-Za-z0-9_]+.")
    core = {k: _load_array(path, k) for k in _CORE_ARRAYS}
    extra = {k: _load_array(path, k) for k in names}
    split_obj = Split(path=path, metadata=meta, extra=extra, **core)
    try:
        _check_loaded(split_obj)
    except DatasetError as e:
        raise DatasetError(f"{path}: {e}") from None
    return split_obj


def _check_loaded(s: Split) -> None:
    m = s.metadata
    seq_len = m["seq_len"]
    if s.inputs.ndim != 2 or s.inputs.shape[1] != seq_len:
        _fail(f"all__inputs.npy must have shape [N, seq_len={seq_len}], got {s.inputs.shape}.")
    if s.labels.shape != s.inputs.shape:
        _fail(f"all__labels.npy must have the shape of the inputs, got {s.labels.shape}.")
    for k in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
        if getattr(s, k).ndim != 1:
            _fail(f"all__{k}.npy must be one-dimensional.")
    n_puzzles = s.puzzle_identifiers.shape[0]
    if s.puzzle_indices.shape[0] != n_puzzles + 1:
        _fail("all__puzzle_indices.npy must have one more entry than all__puzzle_identifiers.npy.")
    _check_offsets("puzzle_indices", s.puzzle_indices, s.inputs.shape[0], "examples", strict=False)
    _check_offsets("group_indices", s.group_indices, n_puzzles, "puzzles", strict=True)
    ids = s.puzzle_identifiers
    if n_puzzles and (int(ids.min()) < 0 or int(ids.max()) >= m["num_puzzle_identifiers"]):
        _fail("all__puzzle_identifiers.npy holds ids outside [0, num_puzzle_identifiers).")
    if s.group_indices.shape[0] - 1 != m["total_groups"]:
        _fail("total_groups in dataset.json does not match all__group_indices.npy.")
    for k in ("inputs", "labels"):  # here, not as an IndexError deep inside the sampler
        f = s.path / f"{SET_NAME}__{k}.npy"
        st = f.stat()
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        check_stored_tokens(f"all__{k}.npy", getattr(s, k), int(m["vocab_size"]), key)
    aug = s.augmentation
    if aug is not None:
        if not isinstance(aug, dict) or aug.get("kind") not in AUGMENTATION_KINDS:
            _fail(f"augmentation {aug!r} is not one of the kinds {list(AUGMENTATION_KINDS)}.")
        if aug["kind"] == "arc":
            side = arc_canvas_side(m)
            if m["seq_len"] != side * side:
                _fail(f"seq_len {m['seq_len']} is not the {side}x{side} canvas's {side * side}.")
            arc_virtual_counts(s.group_indices, s.puzzle_indices, s.extra, side)
