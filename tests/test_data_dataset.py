"""The on-disk format: writing, atomicity, validation, and reading reference-layout datasets."""

import json
import os

import numpy as np
import pytest

from trm_jax.data import dataset as ds


def _arrays(n_groups=3, seed=0):
    """Groups of 1-2 puzzles with 1-3 examples each, Sudoku-like tokens."""
    rng = np.random.default_rng(seed)
    puzzles_per_group = rng.integers(1, 3, n_groups)
    n_puzzles = int(puzzles_per_group.sum())
    examples_per_puzzle = rng.integers(1, 4, n_puzzles)
    n = int(examples_per_puzzle.sum())
    return dict(
        inputs=rng.integers(1, 11, (n, 81)),
        labels=rng.integers(0, 11, (n, 81)),
        puzzle_identifiers=rng.integers(0, 5, n_puzzles),
        puzzle_indices=np.concatenate([[0], np.cumsum(examples_per_puzzle)]),
        group_indices=np.concatenate([[0], np.cumsum(puzzles_per_group)]),
    )


def _write(root, split="train", **over):
    kw = dict(
        _arrays(),
        vocab_size=11,
        seq_len=81,
        num_puzzle_identifiers=5,
        task="sudoku",
        augmentation={"kind": "sudoku"},
    )
    kw.update(over)
    ds.write_split(root, split, **kw)
    return kw


def test_write_then_load_roundtrip(tmp_path):
    kw = _write(
        tmp_path,
        extra_arrays={"score": np.arange(3, dtype=np.float32)},
        extra_metadata={"source": "unit"},
    )
    s = ds.load_split(tmp_path, "train")
    n, p = kw["inputs"].shape[0], len(kw["puzzle_identifiers"])
    g = len(kw["group_indices"]) - 1
    m = json.loads((tmp_path / "train" / "dataset.json").read_text())
    assert m == dict(s.metadata)
    assert {k: m[k] for k in ds._REFERENCE_FIELDS} == {
        "pad_id": 0,
        "ignore_label_id": 0,
        "blank_identifier_id": 0,
        "vocab_size": 11,
        "seq_len": 81,
        "num_puzzle_identifiers": 5,
        "total_groups": g,
        "mean_puzzle_examples": n / p,
        "total_puzzles": p,
        "sets": ["all"],
    }
    assert m["trm_jax_format"] == 1 and m["task"] == "sudoku" and m["source"] == "unit"
    assert s.augmentation == {"kind": "sudoku"} and s.format_version == 1
    assert s.inputs.dtype == np.uint8 and s.labels.dtype == np.uint8
    for k in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
        assert getattr(s, k).dtype == np.int32
        np.testing.assert_array_equal(getattr(s, k), kw[k])
    np.testing.assert_array_equal(s.inputs, kw["inputs"])
    assert isinstance(s.inputs, np.memmap)
    np.testing.assert_array_equal(s.extra["score"], np.arange(3))
    with pytest.raises(dataclasses_frozen()):
        s.task = "x"


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_overwrite_replaces_split_and_leaves_no_temporaries(tmp_path):
    _write(tmp_path)
    kw = _write(tmp_path, **_arrays(n_groups=5, seed=1))
    s = ds.load_split(tmp_path, "train")
    np.testing.assert_array_equal(s.inputs, kw["inputs"])
    assert sorted(os.listdir(tmp_path)) == ["train"]


def test_crash_mid_write_keeps_old_split(tmp_path, monkeypatch):
    old = _write(tmp_path)
    calls = []

    def failing_save(path, arr):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        np.lib.format.write_array(open(path, "wb"), arr)

    monkeypatch.setattr(ds.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path, **_arrays(n_groups=6, seed=2))
    monkeypatch.undo()
    s = ds.load_split(tmp_path, "train")
    np.testing.assert_array_equal(s.inputs, old["inputs"])
    assert sorted(os.listdir(tmp_path)) == ["train"]


def _one_sentence(e: Exception) -> str:
    msg = str(e)
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


N_EX, N_PZ = _arrays()["inputs"].shape[0], _arrays()["puzzle_identifiers"].shape[0]


@pytest.mark.parametrize(
    "over, match",
    [
        (dict(labels=np.zeros((1, 81), int)), "labels must have the shape"),
        (dict(inputs=np.full((N_EX, 81), 11)), r"inputs must hold token ids in \[0, 11\)"),
        (dict(inputs=np.zeros((N_EX, 80), int)), "seq_len=81"),
        (dict(puzzle_indices=np.array([0, 1])), "puzzle_indices must have"),
        (dict(group_indices=np.array([0, 2, 2, N_PZ])), "group_indices must be strictly"),
        (dict(group_indices=np.array([1, 5])), "group_indices must start at 0"),
        (dict(puzzle_identifiers=np.full(N_PZ, 7)), "puzzle_identifiers must be in"),
        (dict(inputs=np.ones((N_EX, 81), np.float32)), "integer array"),
        (dict(vocab_size=300), "vocab_size must be in"),
        (dict(pad_id=11), "pad_id must be in"),
        (dict(task=""), "task must be"),
        (dict(augmentation={"kind": "mixup"}), "augmentation must be None or a dict"),
        (dict(augmentation={"kind": "arc"}), "needs seq_len 900"),
        (dict(extra_metadata={"vocab_size": 3}), "reserved field"),
        (dict(extra_metadata={"x": object()}), "JSON-serialisable"),
        (dict(extra_arrays={"bad name": np.zeros(1)}), "extra array name"),
    ],
)
def test_write_split_rejects_bad_input_with_one_sentence(tmp_path, over, match):
    with pytest.raises(ds.DatasetError, match=match) as e:
        _write(tmp_path, **over)
    _one_sentence(e.value)
    assert isinstance(e.value, ValueError)
    assert not (tmp_path / "train").exists() and os.listdir(tmp_path) == []


def test_write_split_rejects_bad_split_name(tmp_path):
    with pytest.raises(ds.DatasetError, match="plain directory name"):
        _write(tmp_path, split="../x")


def _write_reference_layout(root, split="train"):
    """A dataset exactly as the reference builders write it: no trm_jax fields."""
    d = root / split
    d.mkdir(parents=True)
    inputs = np.array([[1, 2, 3, 4], [2, 2, 3, 4], [4, 3, 2, 1]], np.uint8)
    labels = np.array([[0, 2, 3, 4], [2, 0, 3, 4], [4, 3, 2, 0]], np.uint8)
    np.save(d / "all__inputs.npy", inputs)
    np.save(d / "all__labels.npy", labels)
    np.save(d / "all__puzzle_identifiers.npy", np.array([1, 2], np.int32))
    np.save(d / "all__puzzle_indices.npy", np.array([0, 2, 3], np.int32))
    np.save(d / "all__group_indices.npy", np.array([0, 2], np.int32))
    meta = dict(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=5,
        seq_len=4,
        num_puzzle_identifiers=3,
        total_groups=1,
        mean_puzzle_examples=1.5,
        total_puzzles=2,
        sets=["all"],
    )
    (d / "dataset.json").write_text(json.dumps(meta))
    (root / "identifiers.json").write_text(json.dumps(["<blank>", "a", "a|||t1|||0123456789"]))
    return inputs, labels


def test_reads_reference_layout_unchanged(tmp_path):
    inputs, _ = _write_reference_layout(tmp_path)
    s = ds.load_split(tmp_path, "train")
    assert s.format_version is None and s.augmentation is None and s.task is None
    np.testing.assert_array_equal(s.inputs, inputs)
    assert s.extra == {}
    assert ds.load_identifiers(tmp_path)[2] == "a|||t1|||0123456789"


def test_reference_layout_augmentation_field_is_ignored(tmp_path):
    _write_reference_layout(tmp_path)
    p = tmp_path / "train" / "dataset.json"
    m = json.loads(p.read_text())
    p.write_text(json.dumps({**m, "augmentation": {"kind": "sudoku"}}))
    assert ds.load_split(tmp_path, "train").augmentation is None


def test_load_errors_are_one_sentence(tmp_path):
    with pytest.raises(ds.DatasetError, match="does not exist") as e:
        ds.load_split(tmp_path, "train")
    _one_sentence(e.value)
    _write_reference_layout(tmp_path)
    d = tmp_path / "train"
    (d / "all__labels.npy").unlink()
    with pytest.raises(ds.DatasetError, match="all__labels.npy") as e:
        ds.load_split(tmp_path, "train")
    _one_sentence(e.value)
    np.save(d / "all__labels.npy", np.zeros((2, 4), np.uint8))
    with pytest.raises(ds.DatasetError, match="shape of the inputs") as e:
        ds.load_split(tmp_path, "train")
    _one_sentence(e.value)
    np.save(d / "all__labels.npy", np.zeros((3, 4), np.uint8))
    np.save(d / "all__puzzle_indices.npy", np.array([0, 2, 4], np.int32))
    with pytest.raises(ds.DatasetError, match="must end at the number of examples") as e:
        ds.load_split(tmp_path, "train")
    _one_sentence(e.value)
    (d / "dataset.json").write_text("{not json")
    with pytest.raises(ds.DatasetError, match="not valid JSON"):
        ds.load_split(tmp_path, "train")
    (d / "dataset.json").write_text(json.dumps({"pad_id": 0}))
    with pytest.raises(ds.DatasetError, match="lacks the field"):
        ds.load_split(tmp_path, "train")


def test_load_rejects_future_format(tmp_path):
    _write(tmp_path)
    p = tmp_path / "train" / "dataset.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "trm_jax_format": 2}))
    with pytest.raises(ds.DatasetError, match="trm_jax_format 2"):
        ds.load_split(tmp_path, "train")


def test_identifiers_roundtrip_and_validation(tmp_path):
    ds.write_identifiers(tmp_path, ["<blank>", "x", "y"])
    assert ds.load_identifiers(tmp_path) == ["<blank>", "x", "y"]
    with pytest.raises(ds.DatasetError, match="<blank>"):
        ds.write_identifiers(tmp_path, ["x"])
    assert sorted(os.listdir(tmp_path)) == ["identifiers.json"]


def _arc_table(n_versions=(2, 1)):
    """Stored originals (one puzzle per group) and a consistent ARC version table."""
    base_counts = [2, 1]
    base_pi = np.concatenate([[0], np.cumsum(base_counts)])
    n = base_pi[-1]
    canvas = np.zeros((n, 900), np.uint8)
    canvas[:, 0] = 3
    aug_pi = np.concatenate([[0], np.cumsum(n_versions)])
    per_version = np.repeat(base_counts, n_versions)
    aug_ei = np.concatenate([[0], np.cumsum(per_version)])
    v, e = aug_pi[-1], aug_ei[-1]
    perm = np.tile(np.arange(10, dtype=np.uint8), (v, 1))
    return dict(
        inputs=canvas,
        labels=canvas,
        puzzle_identifiers=np.array([1, 3]),
        puzzle_indices=base_pi,
        group_indices=np.arange(3),
        vocab_size=12,
        seq_len=900,
        num_puzzle_identifiers=4,
        task="arc",
        augmentation={"kind": "arc"},
        extra_arrays=dict(
            aug_puzzle_indices=aug_pi,
            aug_puzzle_identifiers=np.arange(1, v + 1),
            aug_example_indices=aug_ei,
            aug_dihedral=np.zeros(v, np.uint8),
            aug_colour_perm=perm,
            aug_translation=np.zeros((e, 2), np.uint8),
        ),
    )


def test_arc_version_table_sets_virtual_counts(tmp_path):
    ds.write_split(tmp_path, "train", **_arc_table())
    m = ds.load_split(tmp_path, "train").metadata
    # 3 versions: two of the 2-example original, one of the 1-example original.
    assert m["total_puzzles"] == 3 and m["mean_puzzle_examples"] == 5 / 3
    assert m["stored_puzzles"] == 2 and m["stored_examples"] == 3


def test_arc_version_table_validation(tmp_path):
    kw = _arc_table()
    kw["extra_arrays"]["aug_colour_perm"][0, 0] = 5
    with pytest.raises(ds.DatasetError, match="keep 0 fixed"):
        ds.write_split(tmp_path, "train", **kw)
    kw = _arc_table()
    del kw["extra_arrays"]["aug_translation"]
    with pytest.raises(ds.DatasetError, match="aug_translation"):
        ds.write_split(tmp_path, "train", **kw)
    kw = _arc_table()
    kw["extra_arrays"]["aug_example_indices"] = np.array([0, 1, 2, 3])
    with pytest.raises(ds.DatasetError, match="as many examples as its original"):
        ds.write_split(tmp_path, "train", **kw)
