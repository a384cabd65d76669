"""python -m trm_jax.export: the serialized solver runs without trm_jax, answers as in-process."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests import _tiny_run
from trm_jax import export as ex
from trm_jax import rollout as ro
from trm_jax.data import pipeline
from trm_jax.test_time import InferenceSettings, SettingsError

_LOADER = """
import sys
import jax
import numpy as np
solve = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
data = np.load(sys.argv[2])
answer, q, steps = solve.call(data["inputs"], data["ids"])
assert "trm_jax" not in sys.modules, "the loader imported trm_jax"
np.savez(sys.argv[3], answer=np.asarray(answer), q=np.asarray(q), steps=np.asarray(steps))
"""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


@pytest.fixture(scope="session")
def trm(tiny):
    import trm_jax

    return trm_jax.load(tiny["workdir"])


def test_exported_solver_in_a_fresh_process_answers_as_the_rollout(tiny, trm, tmp_path):
    B = 4
    settings = InferenceSettings(steps=4, samples=2, sigma=0.3, select="vote", seed=5)
    path = ex.export(trm, tmp_path / "solver.jaxexport", B, settings)
    meta = json.loads((tmp_path / "solver.jaxexport.json").read_text())
    assert meta["batch_size"] == B and meta["settings"]["select"] == "vote"
    assert meta["settings"]["steps"] == 4 and meta["task"] == "sudoku"

    b = next(pipeline.eval_batches(tiny["data"], global_batch_size=B))
    x, ids = b["inputs"].astype(np.int32), b["puzzle_identifiers"].astype(np.int32)
    np.savez(tmp_path / "batch.npz", inputs=x, ids=ids)
    loader = tmp_path / "load.py"
    loader.write_text(_LOADER)
    out = tmp_path / "out.npz"
    run = subprocess.run(
        [sys.executable, str(loader), str(path), str(tmp_path / "batch.npz"), str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = np.load(out)

    res, steps, _ = ro.rollout_batch(trm.model, trm.variables, trm.puzzle_table, x, ids, settings)
    want = res["vote"][0]
    assert np.array_equal(got["answer"], np.asarray(want.answer))
    assert np.array_equal(got["q"], np.asarray(want.q_halt))
    assert np.array_equal(got["steps"], np.asarray(steps))


def test_verify_and_bad_batch_sizes_are_refused(trm, tmp_path):
    with pytest.raises(SettingsError, match="cannot be compiled"):
        ex.export(trm, tmp_path / "a", 2, InferenceSettings(verify=True))
    with pytest.raises(SettingsError, match="batch size must be an integer >= 1"):
        ex.export(trm, tmp_path / "a", 0)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--samples", "0"], "samples must be an integer >= 1"),
        (["--sigma", "-1"], "sigma must be a finite number >= 0"),
        (["--steps", "0"], "steps must be an integer >= 1"),
        (["--select", "best"], "select must be one of"),
        (["--verify"], "cannot be exported"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_sentence(tiny, tmp_path, extra, words):
    r = _tiny_run.run_cli(
        "trm_jax.export", "--workdir", tiny["workdir"], "--out", tmp_path / "x", *extra
    )
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_missing_checkpoint_exits_2(tmp_path):
    r = _tiny_run.run_cli("trm_jax.export", "--workdir", tmp_path / "nope", "--out", tmp_path / "x")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_writes_the_artifact(tiny, tmp_path):
    out = tmp_path / "s.jaxexport"
    r = _tiny_run.run_cli(
        "trm_jax.export", "--workdir", tiny["workdir"], "--out", out, "--batch-size", "2"
    )
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and (tmp_path / "s.jaxexport.json").is_file()
