"""Grain pipelines: the reference sampler, replay, restore, process slices, test batches."""

import json

import numpy as np
import pytest

from data_gen import arc as arc_builder
from trm_jax.data import augment as aug
from trm_jax.data import dataset as ds
from trm_jax.data import pipeline as pl
from trm_jax.data import tokens as tok


def _indexed_dataset(root, split="train", sizes=((1, 3), (2,), (4, 1, 2), (1,), (3, 3))):
    """Groups of puzzles (example counts in ``sizes``); example i has tokens (i // 10, i % 10)
    in its first two cells, so a batch reveals which examples it holds. Reference layout."""
    counts = [c for g in sizes for c in g]
    n = sum(counts)
    inputs = np.full((n, 4), 11, np.uint8)
    inputs[:, 0], inputs[:, 1] = np.arange(n) // 10, np.arange(n) % 10
    labels = inputs.copy()
    labels[:, 3] = 0  # ignored
    d = root / split
    d.mkdir(parents=True)
    np.save(d / "all__inputs.npy", inputs)
    np.save(d / "all__labels.npy", labels)
    np.save(d / "all__puzzle_identifiers.npy", np.arange(1, len(counts) + 1, dtype=np.int32))
    np.save(
        d / "all__puzzle_indices.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    )
    pg = [len(g) for g in sizes]
    np.save(d / "all__group_indices.npy", np.concatenate([[0], np.cumsum(pg)]).astype(np.int32))
    meta = dict(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=12,
        seq_len=4,
        num_puzzle_identifiers=len(counts) + 1,
        total_groups=len(sizes),
        mean_puzzle_examples=n / len(counts),
        total_puzzles=len(counts),
        sets=["all"],
    )
    (d / "dataset.json").write_text(json.dumps(meta))
    return sizes


def _example_ids(batch):
    return batch["inputs"][:, 0] * 10 + batch["inputs"][:, 1]


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _solved_grids(n):
    """``n`` copies of one solved Sudoku grid as tokens (digit d -> d + 1)."""
    r, c = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    return np.tile(((r * 3 + r // 3 + c) % 9 + 1).reshape(-1) + 1, (n, 1))


def _write_sudoku(root, inputs, labels):
    n = len(inputs)
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


def _sudoku_dataset(root, n=40):
    labels = _solved_grids(n)
    inputs = np.where(np.random.default_rng(0).random((n, 81)) < 0.6, 1, labels)
    _write_sudoku(root, inputs, labels)
    return inputs, labels


def test_reference_sampler_semantics(tmp_path):
    sizes = _indexed_dataset(tmp_path)
    counts = [c for g in sizes for c in g]
    starts = np.concatenate([[0], np.cumsum(counts)])
    puzzle_of = np.repeat(np.arange(len(counts)), counts)
    it = pl.train_iterator(tmp_path, global_batch_size=6, seed=0, epochs_per_iter=3, prefetch=0)
    for _ in range(30):
        b = next(it)
        assert b["inputs"].dtype == np.int32 and b["inputs"].shape == (6, 4)
        assert (b["labels"][:, 3] == pl.IGNORE_LABEL).all()  # ignore_label_id -> -100
        want = np.where(b["inputs"][:, :3] == 0, pl.IGNORE_LABEL, b["inputs"][:, :3])
        np.testing.assert_array_equal(b["labels"][:, :3], want)
        ex = _example_ids(b)
        pz = puzzle_of[ex]
        np.testing.assert_array_equal(b["puzzle_identifiers"], pz + 1)
        # Runs of one puzzle: complete (all its examples, any order) except possibly the last.
        runs = np.split(np.arange(6), np.flatnonzero(np.diff(pz)) + 1)
        for k, run in enumerate(runs):
            p = pz[run[0]]
            want = set(range(starts[p], starts[p + 1]))
            if k < len(runs) - 1:
                assert set(ex[run].tolist()) == want
            else:
                assert set(ex[run].tolist()) <= want


def test_group_order_is_epoch_permutations(tmp_path):
    _indexed_dataset(tmp_path, sizes=tuple((1,) for _ in range(7)))
    # 7 groups of one 1-example puzzle, 2 epochs per iteration, batches of 7: each batch of
    # iteration 1 is exactly one permutation of the groups (reference: Philox(seed + 1)).
    it = pl.train_iterator(tmp_path, global_batch_size=7, seed=5, epochs_per_iter=2, prefetch=0)
    rng = np.random.Generator(np.random.Philox(5 + 1))
    for _ in range(2):
        np.testing.assert_array_equal(_example_ids(next(it)), rng.permutation(7))
    assert it.get_state()["iteration"] == 1
    rng = np.random.Generator(np.random.Philox(5 + 2))
    np.testing.assert_array_equal(_example_ids(next(it)), rng.permutation(7))


def test_short_batch_at_iteration_end_is_dropped(tmp_path):
    _indexed_dataset(tmp_path, sizes=tuple((1,) for _ in range(7)))
    it = pl.train_iterator(tmp_path, global_batch_size=3, seed=1, prefetch=0)
    seen = [_example_ids(next(it)) for _ in range(2)]  # 6 of 7, the 7th dropped
    assert it.get_state() == {**it.get_state(), "iteration": 1, "batch": 2, "cursor": 6}
    next(it)
    assert it.get_state()["iteration"] == 2 and it.get_state()["batch"] == 1
    assert len(set(np.concatenate(seen).tolist())) == 6


def test_same_seed_same_batches_and_other_seed_differs(tmp_path):
    _sudoku_dataset(tmp_path)
    a = _take(pl.train_iterator(tmp_path, global_batch_size=16, seed=7, prefetch=0), 6)
    b = _take(pl.train_iterator(tmp_path, global_batch_size=16, seed=7, prefetch=2), 6)
    c = _take(pl.train_iterator(tmp_path, global_batch_size=16, seed=8, prefetch=0), 6)
    _assert_same(a, b)
    assert not np.array_equal(a[0]["inputs"], c[0]["inputs"])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_restored_iterator_continues_exactly(tmp_path, prefetch):
    _indexed_dataset(tmp_path)
    kw = dict(global_batch_size=5, seed=3, prefetch=prefetch)
    it = pl.train_iterator(tmp_path, **kw)
    _take(it, 7)
    state = json.loads(json.dumps(it.get_state()))  # JSON-serialisable
    expected = _take(it, 12)  # crosses iteration boundaries
    fresh = pl.train_iterator(tmp_path, **kw)
    fresh.set_state(state)
    _assert_same(_take(fresh, 12), expected)


def test_state_from_other_settings_is_rejected(tmp_path):
    _indexed_dataset(tmp_path)
    state = pl.train_iterator(tmp_path, global_batch_size=5, seed=3, prefetch=0).get_state()
    other = pl.train_iterator(tmp_path, global_batch_size=5, seed=4, prefetch=0)
    with pytest.raises(ValueError, match="another pipeline"):
        other.set_state(state)


def test_process_slices_form_the_global_batch(tmp_path):
    _sudoku_dataset(tmp_path)
    full = _take(pl.train_iterator(tmp_path, global_batch_size=12, seed=2, prefetch=0), 4)
    parts = [
        _take(
            pl.train_iterator(
                tmp_path,
                global_batch_size=12,
                seed=2,
                process_index=p,
                process_count=3,
                prefetch=0,
            ),
            4,
        )
        for p in range(3)
    ]
    for i in range(4):
        for k in full[i]:
            np.testing.assert_array_equal(
                np.concatenate([parts[p][i][k] for p in range(3)]), full[i][k]
            )
    with pytest.raises(ValueError, match="divisible"):
        pl.train_iterator(tmp_path, global_batch_size=10, seed=0, process_count=3)


def test_sudoku_augmentation_on_the_fly(tmp_path):
    inputs, labels = _sudoku_dataset(tmp_path)
    it = pl.train_iterator(tmp_path, global_batch_size=40, seed=0, prefetch=0)
    batch = next(it)
    x, y = batch["inputs"], batch["labels"]
    assert not any(np.array_equal(row, labels[0]) for row in y)  # shuffled
    want = set(range(2, 11))
    for xi, yi in zip(x, y):
        g = yi.reshape(9, 9)
        boxes = g.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
        assert all(set(r) == want for m in (g, g.T, boxes) for r in m.tolist())
        givens = xi != tok.SUDOKU_BLANK
        np.testing.assert_array_equal(xi[givens], yi[givens])
    # Blank counts are those of stored puzzles (which one was sampled is in the example order).
    assert sorted((x == 1).sum(1).tolist()) == sorted((inputs == 1).sum(1).tolist())


def test_dihedral_augmentation_on_the_fly(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    inputs = rng.integers(1, 5, (n, 16))
    ds.write_split(
        tmp_path,
        "train",
        inputs=inputs,
        labels=inputs,
        puzzle_identifiers=np.zeros(n, int),
        puzzle_indices=np.arange(n + 1),
        group_indices=np.arange(n + 1),
        vocab_size=6,
        seq_len=16,
        num_puzzle_identifiers=1,
        task="maze",
        augmentation={"kind": "dihedral"},
    )
    it = pl.train_iterator(tmp_path, global_batch_size=12, seed=0, epochs_per_iter=5, prefetch=0)
    tids_seen = set()
    for _ in range(5):
        for row in next(it)["inputs"]:
            matches = [
                (i, t)
                for i in range(n)
                for t in range(8)
                if np.array_equal(aug.dihedral_batch(inputs[i : i + 1], [t])[0], row)
            ]
            assert matches
            tids_seen.update(t for _, t in matches)
    assert len(tids_seen) == 8


def test_batch_larger_than_iteration_is_a_clear_error(tmp_path):
    _indexed_dataset(tmp_path)
    it = pl.train_iterator(tmp_path, global_batch_size=100, seed=0, prefetch=0)
    with pytest.raises(ValueError, match="exceeds the examples of one iteration"):
        next(it)


def test_eval_batches_padding_and_processes(tmp_path):
    _indexed_dataset(tmp_path, split="test")
    n = 20
    batches = list(pl.eval_batches(tmp_path, global_batch_size=8))
    assert len(batches) == 3
    last = batches[-1]
    assert last["valid"].tolist() == [True] * 4 + [False] * 4
    assert last["example_index"].tolist() == [16, 17, 18, 19, -1, -1, -1, -1]
    assert (last["inputs"][4:] == 0).all() and (last["labels"][4:] == -100).all()
    assert (last["puzzle_identifiers"][4:] == 0).all()
    ex = np.concatenate([_example_ids(b)[b["valid"]] for b in batches])
    np.testing.assert_array_equal(ex, np.arange(n))
    # puzzle identifiers looked up per example
    counts = [1, 3, 2, 4, 1, 2, 1, 3, 3]
    pid = np.repeat(np.arange(1, 10), counts)
    got = np.concatenate([b["puzzle_identifiers"][b["valid"]] for b in batches])
    np.testing.assert_array_equal(got, pid)
    # two processes: same number of batches, disjoint rows, all examples once
    per = [
        list(pl.eval_batches(tmp_path, global_batch_size=8, process_index=p, process_count=2))
        for p in range(2)
    ]
    assert len(per[0]) == len(per[1]) == 3
    idx = np.concatenate([b["example_index"][b["valid"]] for p in per for b in p])
    assert sorted(idx.tolist()) == list(range(n))
    assert per[1][-1]["valid"].tolist() == [False] * 4


def test_load_metadata(tmp_path):
    _indexed_dataset(tmp_path)
    m = pl.load_metadata(tmp_path)
    assert m.vocab_size == 12 and m.seq_len == 4 and m.num_examples == 20
    assert m.total_groups == 5 and m.total_puzzles == 9 and m.augmentation is None
    assert m.task is None and m.ignore_label_id == 0


# --------------------------------------------------------------------------------------------
# ARC: the on-the-fly dataset and its materialised twin give identical batches


def _arc_builds(tmp_path):
    kw = dict(
        subsets=["training", "evaluation"],
        test_set="evaluation",
        num_aug=8,
        seed=42,
        max_puzzles=5,
        log=lambda _: None,
    )
    data_dir = arc_builder.DEFAULT_DATA_DIR
    if not (data_dir / "arc-agi_training_challenges.json").is_file():
        data_dir = tmp_path / "json"
        _fake_kaggle(data_dir)
    arc_builder.build(tmp_path / "fly", data_dir=data_dir, **kw)
    arc_builder.build(tmp_path / "mat", data_dir=data_dir, materialize=True, **kw)
    return tmp_path / "fly", tmp_path / "mat"


def _fake_kaggle(d):
    rng = np.random.default_rng(0)
    d.mkdir(parents=True)
    for subset in ("training", "evaluation"):
        ch, so = {}, {}
        for i in range(5):

            def g():
                return rng.integers(0, 10, tuple(rng.integers(1, 12, 2))).tolist()

            ch[f"{subset[:2]}{i:06d}"] = {
                "train": [{"input": g(), "output": g()} for _ in range(3)],
                "test": [{"input": g()}],
            }
            so[f"{subset[:2]}{i:06d}"] = [g()]
        (d / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(ch))
        (d / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(so))


def test_arc_on_the_fly_equals_materialised_twin(tmp_path):
    fly, mat = _arc_builds(tmp_path)
    for split in ("train", "test"):
        a, b = pl.load_metadata(fly, split), pl.load_metadata(mat, split)
        assert dataclasses_replace_aug(a) == dataclasses_replace_aug(b)
    kw = dict(global_batch_size=32, seed=11, epochs_per_iter=4, prefetch=0)
    _assert_same(_take(pl.train_iterator(fly, **kw), 25), _take(pl.train_iterator(mat, **kw), 25))
    _assert_same(
        list(pl.eval_batches(fly, global_batch_size=16)),
        list(pl.eval_batches(mat, global_batch_size=16)),
    )
    # And the on-the-fly dataset really is small: originals only.
    assert ds.load_split(fly, "train").inputs.shape[0] < ds.load_split(mat, "train").inputs.shape[0]


def dataclasses_replace_aug(m):
    import dataclasses

    return dataclasses.replace(m, augmentation=None)


def test_arc_train_batches_are_translated_augmented_versions(tmp_path):
    fly, _ = _arc_builds(tmp_path)
    names = ds.load_identifiers(fly)
    batch = next(pl.train_iterator(fly, global_batch_size=32, seed=0, prefetch=0))
    translated = 0
    for x, pid in zip(batch["inputs"], batch["puzzle_identifiers"]):
        c = x.reshape(30, 30)
        rows = np.flatnonzero((c >= 2).any(1))
        cols = np.flatnonzero((c >= 2).any(0))
        translated += rows[0] > 0 or cols[0] > 0
        grid = c[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert (grid >= 2).all()  # one colour rectangle
        assert names[pid] != "<blank>"
    assert translated > 0


def _sudoku_by_givens(root, n=40):
    """Puzzle i has 80 - i givens (one solution grid, i + 1 cells blanked)."""
    labels = _solved_grids(n)
    inputs = labels.copy()
    for i in range(n):
        inputs[i, : i + 1] = 1
    _write_sudoku(root, inputs, labels)


def test_givens_curriculum_grows_from_easiest_to_all(tmp_path):
    _sudoku_by_givens(tmp_path)
    cur = pl.Curriculum("givens", start=0.25, batches=10)
    it = pl.train_iterator(tmp_path, global_batch_size=8, seed=0, prefetch=0, curriculum=cur)
    seen_hardest = []
    for b in range(30):
        givens = (next(it)["inputs"] > 1).sum(axis=1)
        pool = cur.pool(40, b)
        # Batch b draws only from the `pool` easiest puzzles (most givens).
        assert givens.min() >= 80 - (pool - 1), (b, pool, givens)
        seen_hardest.append(givens.min())
    assert cur.pool(40, 0) == 10 and cur.pool(40, 10) == 40
    assert seen_hardest[0] >= 71  # the first batch: the easiest quarter only
    assert min(seen_hardest[10:]) < 60  # after the ramp, hard puzzles are drawn


def test_curriculum_state_resumes_exactly_and_is_checked(tmp_path):
    _sudoku_by_givens(tmp_path)
    cur = pl.Curriculum("givens", start=0.5, batches=20)
    kw = dict(global_batch_size=8, seed=3, prefetch=0)
    it = pl.train_iterator(tmp_path, curriculum=cur, **kw)
    _take(it, 7)
    state = it.get_state()
    want = _take(it, 12)
    again = pl.train_iterator(tmp_path, curriculum=cur, **kw)
    again.set_state(state)
    _assert_same(_take(again, 12), want)
    plain = pl.train_iterator(tmp_path, **kw)
    with pytest.raises(ValueError, match="another pipeline"):
        plain.set_state(state)  # a curriculum run's position is not a plain run's


def test_curriculum_needs_sudoku_and_valid_settings(tmp_path):
    _indexed_dataset(tmp_path)
    with pytest.raises(ds.DatasetError, match="needs a Sudoku dataset"):
        pl.train_iterator(tmp_path, global_batch_size=2, seed=0, curriculum=pl.Curriculum())
    for bad in (dict(key="rating"), dict(start=0.0), dict(start=1.5), dict(batches=0)):
        with pytest.raises(ValueError):
            pl.Curriculum(**bad)
