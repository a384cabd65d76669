"""ARC canvas side as a dataset setting, and the generated (RE-ARC) benchmark."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_gen import arc
from data_gen import arc_generated as gen
from trm_jax import config as config_lib
from trm_jax.arc_scoring import ArcVoter, crop, inverse_augment, parse_identifier
from trm_jax.data import dataset as ds
from trm_jax.data import pipeline
from trm_jax.data import tokens as tok

REPO = Path(__file__).resolve().parent.parent


def _write_small_kaggle(d: Path, big: bool = False) -> dict:
    """Subset 'small': three puzzles of grids up to 10x10 (one 12x12 input when ``big``)."""
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)

    def grid(hi=11):
        return rng.integers(0, 10, tuple(rng.integers(1, hi, 2))).tolist()

    ch = {
        f"p{i}": {
            "train": [{"input": grid(), "output": grid()} for _ in range(3)],
            "test": [{"input": grid()}],
        }
        for i in range(3)
    }
    ch["p0"]["train"][0]["input"] = np.ones((10, 10), int).tolist()  # a full canvas
    if big:
        ch["p2"]["train"][1]["input"] = np.ones((12, 12), int).tolist()
    so = {pid: [grid()] for pid in ch}
    (d / "arc-agi_small_challenges.json").write_text(json.dumps(ch))
    (d / "arc-agi_small_solutions.json").write_text(json.dumps(so))
    return ch


def _uncrop(canvas: np.ndarray) -> np.ndarray:
    """The canvas moved so its grid starts at (0, 0) (undoes a translation)."""
    side = canvas.shape[0]
    rows, cols = np.nonzero(canvas >= tok.ARC_COLOUR_OFFSET)
    r0, c0 = rows.min(), cols.min()
    out = np.zeros_like(canvas)
    out[: side - r0, : side - c0] = canvas[r0:, c0:]
    return out


def test_canvas_10_round_trip(tmp_path):
    ch = _write_small_kaggle(tmp_path / "json")
    out = tmp_path / "c10"
    arc.build(
        out,
        subsets=["small"],
        test_set="small",
        num_aug=6,
        seed=0,
        data_dir=tmp_path / "json",
        canvas=10,
        log=lambda _: None,
    )
    names = ds.load_identifiers(out)
    for split in ("train", "test"):
        s = ds.load_split(out, split)
        assert s.metadata["seq_len"] == 100 and s.metadata[ds.ARC_CANVAS_FIELD] == 10
        assert ds.arc_canvas_side(s.metadata) == 10
    meta = pipeline.load_metadata(out, "train")
    assert config_lib.model_config(config_lib.default_config(), meta).seq_len == 100

    # Train split: versions carry dihedral, colour map and translation; test split: no shift.
    src = pipeline._Source(ds.load_split(out, "train"))
    seen_shift = False
    for v in range(len(src.puzzle_identifiers)):
        rows = np.arange(src.puzzle_indices[v], src.puzzle_indices[v + 1])
        x, y = src.fetch(rows, np.full(len(rows), v))
        pid, tid, perm = parse_identifier(names[src.puzzle_identifiers[v]])
        for k, (xi, yi) in enumerate(zip(x, y)):
            cx = xi.reshape(10, 10)
            seen_shift |= not (cx[0, 0] >= tok.ARC_COLOUR_OFFSET)
            got_x = inverse_augment(crop(_uncrop(cx)), tid, perm)
            got_y = inverse_augment(crop(_uncrop(yi.reshape(10, 10))), tid, perm)
            np.testing.assert_array_equal(got_x, ch[pid]["train"][k]["input"])
            np.testing.assert_array_equal(got_y, ch[pid]["train"][k]["output"])
    assert seen_shift  # translations happen inside the 10x10 canvas
    n = 0
    for b in pipeline.eval_batches(out, global_batch_size=8, split="test"):
        for xi, ident, ok in zip(b["inputs"], b["puzzle_identifiers"], b["valid"]):
            if not ok:
                continue
            pid, tid, perm = parse_identifier(names[ident])
            got = inverse_augment(crop(xi), tid, perm)
            np.testing.assert_array_equal(got, ch[pid]["test"][0]["input"])
            n += 1
    assert n == 3 * 7


def _perfect_votes(root: Path) -> dict:
    names = ds.load_identifiers(root)
    test_puzzles = json.loads((root / "test_puzzles.json").read_text())
    voter = ArcVoter(names)
    for b in pipeline.eval_batches(root, global_batch_size=16, split="test"):
        labels = np.where(b["labels"] < 0, 0, b["labels"])
        voter.add_batch(b["inputs"], b["puzzle_identifiers"], np.zeros(len(labels)), labels)
    return voter.result(test_puzzles)[0]


def test_old_dataset_without_canvas_field_loads_and_scores(tmp_path):
    _write_small_kaggle(tmp_path / "json")
    out = tmp_path / "c30"
    arc.build(
        out,
        subsets=["small"],
        test_set="small",
        num_aug=3,
        seed=0,
        data_dir=tmp_path / "json",
        log=lambda _: None,
    )
    before = _perfect_votes(out)
    for split in ("train", "test"):  # make it look like a dataset built before the field
        p = out / split / "dataset.json"
        m = json.loads(p.read_text())
        assert m.pop(ds.ARC_CANVAS_FIELD) == 30
        p.write_text(json.dumps(m))
    s = ds.load_split(out, "train")
    assert ds.arc_canvas_side(s.metadata) == 30 and s.inputs.shape[1] == 900
    assert _perfect_votes(out) == before
    assert before["ARC/pass@1"] == before["ARC/pass@2"] == 1.0


def test_grid_larger_than_canvas_is_refused(tmp_path):
    _write_small_kaggle(tmp_path / "json", big=True)
    out = tmp_path / "refused"
    cmd = [sys.executable, "-m", "data_gen.arc", "build", "--out", str(out), "--canvas", "10"]
    cmd += ["--subsets", "small", "--test-set", "small", "--data-dir", str(tmp_path / "json")]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "p2" in r.stderr and "12x12, larger than the 10x10 canvas" in r.stderr
    assert not out.exists()


def test_canvas_mismatch_is_refused_by_the_writer():
    with pytest.raises(ds.DatasetError, match="needs seq_len 100"):
        ds.write_split(
            "/nonexistent-never-written",
            "train",
            inputs=np.zeros((1, 900), np.uint8),
            labels=np.zeros((1, 900), np.uint8),
            puzzle_identifiers=np.zeros(1, np.int32),
            puzzle_indices=np.array([0, 1]),
            group_indices=np.array([0, 1]),
            vocab_size=12,
            seq_len=900,
            num_puzzle_identifiers=1,
            task="arc",
            augmentation=None,
            extra_metadata={ds.ARC_CANVAS_FIELD: 10},
        )


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_build_generated_layout_and_determinism(tmp_path):
    pytest.importorskip("reasoning_gym")
    kw = dict(
        canvas=10,
        tasks=["67a3c6ac", "c8f0f002"],
        heldout=["68b16354"],
        demos=3,
        heldout_demos=2,
        test_inputs=2,
        num_aug=2,
        log=lambda _: None,
    )
    a = gen.build_generated(tmp_path / "a", seed=5, **kw)
    gen.build_generated(tmp_path / "b", seed=5, **kw)
    gen.build_generated(tmp_path / "c", seed=6, **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert a["train"] == {"groups": 2, "examples": 2 * 3 * 3}
    assert a["test"] == {"groups": 2, "examples": 2 * 3 * 2}

    root = tmp_path / "a"
    m = json.loads((root / "train" / "dataset.json").read_text())
    assert m["seq_len"] == 100 and m[ds.ARC_CANVAS_FIELD] == 10
    info = m["arc_build"]
    assert info["seed"] == 5 and info["library_version"] == gen.PINNED_VERSION
    assert info["tasks"] == ["67a3c6ac", "c8f0f002"] and info["heldout"] == ["68b16354"]
    chal = json.loads((root / "heldout_challenges.json").read_text())
    sol = json.loads((root / "heldout_solutions.json").read_text())
    assert list(chal) == list(sol) == ["68b16354"]
    task = chal["68b16354"]
    assert len(task["train"]) == 2 and len(task["test"]) == 2 and len(sol["68b16354"]) == 2
    assert all(set(t) == {"input"} for t in task["test"])
    for pair, out in zip(
        task["train"] + task["test"], [p["output"] for p in task["train"]] + sol["68b16354"]
    ):
        x = np.array(pair["input"])
        assert max(x.shape) <= 10
        np.testing.assert_array_equal(np.flipud(x), out)  # the task's rule: flip up-down
    # Held-out tasks stay out of the dataset; the training tasks' test inputs are its test split.
    names = ds.load_identifiers(root)
    assert not any(n.startswith("68b16354") for n in names)
    tp = json.loads((root / "test_puzzles.json").read_text())
    assert sorted(tp) == ["67a3c6ac", "c8f0f002"] and all(len(t["test"]) == 2 for t in tp.values())


def test_build_generated_chunks_share_the_task_rows(tmp_path):
    pytest.importorskip("reasoning_gym")
    kw = dict(canvas=8, tasks=["c8f0f002", "67a3c6ac"], heldout=[], demos=6, test_inputs=1)
    whole = gen.build_generated(tmp_path / "w", seed=1, num_aug=1, log=lambda _: None, **kw)
    cut = gen.build_generated(tmp_path / "c", seed=1, num_aug=1, chunk=2, log=lambda _: None, **kw)
    # Same pairs, same versions and rows; 3 groups of 2 pairs per task instead of 1 of 6.
    assert whole["train"] == {"groups": 2, "examples": 2 * 2 * 6}
    assert cut["train"] == {"groups": 6, "examples": 2 * 2 * 6}
    assert cut["test"] == whole["test"] == {"groups": 2, "examples": 2 * 2 * 1}
    assert ds.load_identifiers(tmp_path / "c") == ds.load_identifiers(tmp_path / "w")
    split = ds.load_split(tmp_path / "c", "train")
    ids = np.asarray(split.extra["aug_puzzle_identifiers"])
    assert len(ids) == 12 and len(set(ids.tolist())) == 4  # 6 groups x 2 versions, 4 rows
    assert (
        json.loads((tmp_path / "c" / "train" / "dataset.json").read_text())["arc_build"]["chunk"]
        == 2
    )
    for bad in (-1,):
        with pytest.raises(arc.BuildError, match="--chunk"):
            gen.build_generated(tmp_path / "x", seed=1, chunk=bad, log=lambda _: None, **kw)


def test_heldout_test_inputs_leave_the_training_data_unchanged(tmp_path):
    pytest.importorskip("reasoning_gym")
    kw = dict(canvas=8, tasks=["c8f0f002"], heldout=["b1948b0a"], demos=4, num_aug=1)
    gen.build_generated(tmp_path / "a", seed=2, log=lambda _: None, **kw)
    gen.build_generated(tmp_path / "b", seed=2, heldout_test_inputs=5, log=lambda _: None, **kw)
    for split in ("train", "test"):
        for f in sorted((tmp_path / "a" / split).glob("*.npy")):
            assert f.read_bytes() == (tmp_path / "b" / split / f.name).read_bytes(), f
    sol_a = json.loads((tmp_path / "a" / "heldout_solutions.json").read_text())
    sol_b = json.loads((tmp_path / "b" / "heldout_solutions.json").read_text())
    assert len(sol_a["b1948b0a"]) == 2 and len(sol_b["b1948b0a"]) == 5
    assert sol_b["b1948b0a"][:2] == sol_a["b1948b0a"]  # the same first draws


def test_build_generated_without_the_library(tmp_path, monkeypatch, capsys):
    for mod in [m for m in sys.modules if m == "reasoning_gym" or m.startswith("reasoning_gym.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import now fails
    rc = arc.main(["build-generated", "--out", str(tmp_path / "x"), "--canvas", "10"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "pip install 'trm_jax[arc]'" in err and "reasoning-gym==0.1.25" in err
    assert not (tmp_path / "x").exists()
