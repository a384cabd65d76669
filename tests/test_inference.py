"""trm_jax.load and the TRM object: locating checkpoints, errors, bound functions, lowering."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import _tiny_run
from trm_jax import inference as inf
from trm_jax.checkpoint import CheckpointError


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


@pytest.fixture(scope="session")
def trm(tiny):
    import trm_jax

    return trm_jax.load(tiny["workdir"])


def test_importing_the_package_stays_light():
    code = (
        "import sys, trm_jax; "
        "print(sorted(m for m in ('jax', 'orbax', 'matplotlib', 'flax') if m in sys.modules)); "
        "print(callable(trm_jax.load))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_load_workdir_latest_step_and_step_paths_agree(tiny, trm):
    steps = inf.locate(tiny["workdir"]).available_steps
    assert trm.step == max(steps) == tiny["result"].step
    assert trm.task == "sudoku"
    assert trm.model_config.halt_max_steps == tiny["config"].model.halt_max_steps
    assert trm.use_ema is False  # the run trained without EMA
    first = min(steps)
    by_step = inf.load(tiny["workdir"], step=first)
    by_path = inf.load(tiny["workdir"] / "checkpoints" / str(first))
    assert by_step.step == by_path.step == first
    np.testing.assert_array_equal(
        np.asarray(by_step.params["lm_head"]["kernel"]),
        np.asarray(by_path.params["lm_head"]["kernel"]),
    )
    # Different steps hold different weights.
    assert not np.array_equal(
        np.asarray(by_step.params["lm_head"]["kernel"]), np.asarray(trm.params["lm_head"]["kernel"])
    )
    assert inf.load(tiny["workdir"], ema=True).use_ema


def test_missing_and_foreign_checkpoints_raise_one_sentence(tiny, tmp_path):
    cases = []
    with pytest.raises(CheckpointError, match="does not exist") as e:
        inf.load(tmp_path / "nowhere")
    cases.append(e)
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="has no checkpoints") as e:
        inf.load(tmp_path / "empty")
    cases.append(e)
    with pytest.raises(CheckpointError, match="no checkpoint for step 999; it has steps") as e:
        inf.load(tiny["workdir"], step=999)
    cases.append(e)
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="neither a trm_jax work dir") as e:
        inf.load(tmp_path / "plain")
    cases.append(e)
    foreign = tmp_path / "foreign" / "checkpoints" / "7"
    (foreign / "state").mkdir(parents=True)
    (foreign / "other").mkdir()
    with pytest.raises(CheckpointError, match="not a trm_jax checkpoint") as e:
        inf.load(tmp_path / "foreign")
    cases.append(e)
    for e in cases:
        assert "\n" not in str(e.value) and str(e.value).endswith(".")


def test_meta_and_state_that_disagree_are_refused(tiny, tmp_path):
    import orbax.checkpoint as ocp

    step = inf.locate(tiny["workdir"]).step
    copy = tmp_path / "copy"
    shutil.copytree(tiny["workdir"], copy)
    meta_dir = copy / "checkpoints" / str(step) / "meta"
    meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
        meta_dir, args=ocp.args.JsonRestore()
    )
    meta["model"]["hidden_size"] = 48
    shutil.rmtree(meta_dir)
    ocp.Checkpointer(ocp.JsonCheckpointHandler()).save(meta_dir, args=ocp.args.JsonSave(meta))
    with pytest.raises(CheckpointError, match="other shapes"):
        inf.load(copy)


def test_solve_trace_has_one_frame_per_step_and_the_answer_is_the_halting_frame(tiny, trm):
    x = np.load(tiny["data"] / "test" / "all__inputs.npy")[0]
    puzzle = "".join("." if t == 1 else str(t - 1) for t in x)
    N = trm.model_config.halt_max_steps
    answer, trace = trm.solve(puzzle, trace=True)
    assert len(trace.predictions) == N and trace.q_halt.shape == (N,)
    assert trace.halt_step == N
    np.testing.assert_array_equal(answer, trace.predictions[-1])
    np.testing.assert_array_equal(trace.puzzle.reshape(-1), np.where(x == 1, 0, x.astype(int) - 1))
    np.testing.assert_array_equal(trm.solve(puzzle), answer)
    assert np.all((trace.halt_probability > 0) & (trace.halt_probability < 1))


def test_solve_with_test_time_settings(tiny, trm, tmp_path):
    from trm_jax.test_time import InferenceSettings, SettingsError

    inputs = np.load(tiny["data"] / "test" / "all__inputs.npy")
    puzzles = ["".join("." if t == 1 else str(int(t) - 1) for t in x) for x in inputs[:3]]
    N = trm.model_config.halt_max_steps
    # The reference given as settings is the reference; keywords and objects agree.
    np.testing.assert_array_equal(trm.solve(puzzles[0], steps=N), trm.solve(puzzles[0]))
    s = InferenceSettings(samples=2, sigma=0.3, select="vote", seed=4)
    a = trm.solve_many(puzzles, settings=s)
    b = trm.solve_many(puzzles, samples=2, sigma=0.3, select="vote", seed=4)
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))  # same seed
    # Noise is keyed by the position in the call: the first puzzle alone, in the same batch shape.
    np.testing.assert_array_equal(trm.solve(puzzles[0], settings=s, batch_size=3), a[0])
    grids, sol = trm.solve_many(puzzles, samples=2, sigma=0.3, verify=True, details=True)
    assert sol.verified is not None and sol.num_puzzles == 3 and len(grids) == 3
    for bad, words in (
        ({"samples": 0}, "samples must be an integer >= 1"),
        ({"sigma": -1.0}, "sigma must be a finite number >= 0"),
        ({"bogus": 1}, "unknown inference setting 'bogus'"),
        ({"steps": 2, "trace": True}, "use select='first_halt'"),
    ):
        with pytest.raises(SettingsError, match=words):
            trm.solve(puzzles[0], **bad)


def test_halt_steps_fixed_and_adaptive(trm):
    q = np.array([[-1.0, 0.5, -2.0], [0.3, 2.0, -1.0], [1.0, -1.0, -3.0]])  # [N=3, B=3]
    halts = trm.halts(q, np.zeros_like(q))  # a TRM halts on q_halt > 0
    np.testing.assert_array_equal(halts, q > 0)
    np.testing.assert_array_equal(inf.halt_steps(halts, "fixed"), [3, 3, 3])
    np.testing.assert_array_equal(inf.halt_steps(halts, "adaptive"), [2, 1, 3])


def test_solve_rejects_bad_and_foreign_puzzles(trm):
    with pytest.raises(inf.PuzzleError, match="81 characters"):
        trm.solve("123")
    with pytest.raises(inf.PuzzleError, match="digit 5 appears twice in row 1"):
        trm.solve("55" + "." * 79)
    with pytest.raises(
        inf.PuzzleError, match="maze puzzle but the checkpoint .* is a Sudoku model"
    ):
        trm.solve("#" * 900, task="maze")
    with pytest.raises(ValueError, match="halting"):
        trm.solve("." * 81, halting="sometimes")


def test_act_step_and_evaluate_are_bound_to_the_weights(tiny, trm):
    x = np.load(tiny["data"] / "test" / "all__inputs.npy")[:4].astype(np.int32)
    y = np.load(tiny["data"] / "test" / "all__labels.npy")[:4].astype(np.int32)
    batch = {"inputs": x, "labels": y, "puzzle_identifiers": np.zeros(4, np.int32)}
    carry = trm.initial_carry(batch)
    for _ in range(trm.model_config.halt_max_steps):
        carry, out, loss, metrics = trm.act_step(carry, batch)
    assert bool(np.all(carry.halted)) and int(carry.steps[0]) == trm.model_config.halt_max_steps
    outputs, sums = trm.evaluate(batch)
    np.testing.assert_array_equal(np.asarray(outputs["preds"]), np.asarray(out["preds"]))
    assert int(sums["count"]) == 4


def test_lower_gives_hlo_text_cost_and_memory_analysis(trm):
    lowered = trm.lower("act_step", batch_size=2)
    text = lowered.as_text()
    assert "func.func" in text and "stablehlo" in text
    cost = lowered.cost_analysis()
    assert cost["flops"] > 0
    compiled = trm.compile("act_step", batch_size=2)
    assert "HloModule" in compiled.as_text()
    assert compiled.memory_analysis().argument_size_in_bytes > 0
    with pytest.raises(ValueError, match="fn_name"):
        trm.lower("train_step")
