"""python -m trm_jax.evaluate on hostile input: one sentence, exit 2, nothing lost or computed.

Each case is checked before any weights are loaded where it can be (``inference.load`` is made
to fail the test when reached).
"""

import json
import shutil

import numpy as np
import pytest

from tests import _tiny_run
from tests._cli_checks import one_sentence, snapshot
from trm_jax import evaluate, evaluate_cli, inference


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the command gets as far as loading weights."""

    def load(*a, **k):
        raise AssertionError("the bad input was not refused before the work")

    monkeypatch.setattr(inference, "load", load)
    monkeypatch.setattr(evaluate_cli.inference, "load", load)


def _refused(argv, capsys) -> str:
    assert evaluate.main(argv) == 2
    return one_sentence(capsys.readouterr().err)


def test_out_that_is_a_file_fails_before_the_evaluation(tiny, tmp_path, capsys, no_work):
    f = tmp_path / "results"
    f.write_text("keep")
    err = _refused(["--workdir", str(tiny["workdir"]), "--out", str(f), "--quiet"], capsys)
    assert "is a file" in err
    assert f.read_text() == "keep"


def test_split_with_dotdot_is_refused(tiny, tmp_path, capsys, no_work):
    out = tmp_path / "out"
    argv = ["--workdir", str(tiny["workdir"]), "--split", "../../../x/test", "--out", str(out)]
    assert "plain name" in _refused(argv + ["--quiet"], capsys)
    assert not out.exists() and not (tmp_path / "x").exists()


def _copy_run(tiny, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(tiny["workdir"], work, ignore=shutil.ignore_patterns("eval"))
    return work


def _edit_config(work, fn):
    path = work / "config.json"
    cfg = json.loads(path.read_text())
    fn(cfg)
    path.write_text(json.dumps(cfg))


def test_config_json_pointing_outside_is_not_followed(tiny, tmp_path, capsys):
    # data.path "../../etc" (from the cwd: /etc) is never read: the recorded absolute path is.
    work = _copy_run(tiny, tmp_path)
    _edit_config(work, lambda c: c["data"].update(path="../../etc"))
    assert evaluate.main(["--workdir", str(work), "--quiet", "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    record = json.loads(next((tmp_path / "o").rglob("metrics.json")).read_text())
    assert record["dataset"] == str(tiny["data"].absolute())


def test_a_missing_recorded_dataset_is_named(tiny, tmp_path, capsys, no_work):
    work = _copy_run(tiny, tmp_path)
    _edit_config(work, lambda c: c["data"].update(path=str(tmp_path / "gone")))
    for meta in (work / "checkpoints").glob("*/meta/metadata"):
        m = json.loads(meta.read_text())
        m["dataset"] = str(tmp_path / "gone_too")
        meta.write_text(json.dumps(m))
    err = _refused(["--workdir", str(work), "--quiet"], capsys)
    assert str(tmp_path / "gone") in err and "--dataset" in err


def test_config_json_whose_data_is_a_string(tiny, tmp_path, capsys, no_work):
    work = _copy_run(tiny, tmp_path)
    _edit_config(work, lambda c: c.update(data="data/sudoku"))
    assert "not a section" in _refused(["--workdir", str(work), "--quiet"], capsys)


def test_huge_batch_size_says_how_much_memory(tiny, capsys, no_work):
    err = _refused(["--workdir", str(tiny["workdir"]), "--batch-size", "100000000"], capsys)
    assert "of memory" in err and "iB" in err and "smaller batch" in err


def test_token_outside_the_vocabulary_is_refused_at_load(tiny, tmp_path, capsys, no_work):
    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    f = data / "test" / "all__inputs.npy"
    a = np.load(f)
    a[2, 7] = 200
    np.save(f, a)
    err = _refused(["--workdir", str(tiny["workdir"]), "--dataset", str(data), "--quiet"], capsys)
    assert "all__inputs.npy" in err and "outside the vocabulary" in err


def test_truncated_checkpoint_gives_a_sentence_without_tensorstore_noise(tiny, tmp_path, capsys):
    work = _copy_run(tiny, tmp_path)
    latest = max(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    for f in (work / "checkpoints" / str(latest) / "state").glob("ocdbt.process_0/d/*"):
        with open(f, "r+b") as fh:
            fh.truncate(10)
    before = snapshot(work)
    err = _refused(["--workdir", str(work), "--quiet"], capsys)
    assert "cannot be restored" in err
    assert snapshot(work) == before


def test_dataset_json_naming_arrays_outside_its_split(tiny, tmp_path, capsys, no_work):
    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    meta_path = data / "test" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["extra_arrays"] = ["../../../../etc/passwd"]
    meta_path.write_text(json.dumps(meta))
    err = _refused(["--workdir", str(tiny["workdir"]), "--dataset", str(data), "--quiet"], capsys)
    assert "extra_arrays" in err
