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
    path = trm.export(tmp_path / "solver.jaxexport", B, settings)  # the notebook API
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
def test_cli_bad_arguments_exit_2_with_one_sentence(tiny, tmp_path, capsys, extra, words):
    # In-process (ex.main returns the exit status): one JAX start for the whole file.
    assert ex.main(["--workdir", str(tiny["workdir"]), "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_missing_checkpoint_exits_2(tmp_path, capsys):
    assert ex.main(["--workdir", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_cli_writes_the_artifact(tiny, tmp_path):
    out = tmp_path / "s.jaxexport"
    assert ex.main(["--workdir", str(tiny["workdir"]), "--out", str(out), "--batch-size", "2"]) == 0
    assert out.stat().st_size > 0 and (tmp_path / "s.jaxexport.json").is_file()
