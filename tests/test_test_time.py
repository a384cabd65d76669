"""Test-time compute: settings, selection rules, the rollout's parity, early halting, streaming."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import _tiny_run
from trm_jax import batching
from trm_jax import rollout as ro
from trm_jax import test_time as tt
from trm_jax.data import pipeline
from trm_jax.steps import evaluate_batch
from trm_jax.test_time import InferenceSettings, SettingsError


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


@pytest.fixture(scope="session")
def trm(tiny):
    import trm_jax

    return trm_jax.load(tiny["workdir"])


@pytest.fixture(scope="session")
def batch(tiny):
    b = next(pipeline.eval_batches(tiny["data"], global_batch_size=_tiny_run.SUDOKU_EVAL_BATCH))
    return {k: b[k] for k in ("inputs", "labels", "puzzle_identifiers")}


def _halting_variables(trm, inputs, ids):
    """The weights with the q_head's halt bias moved so that rows halt at different steps (the
    barely trained tiny model never says q_halt > 0)."""
    res, _, _ = ro.rollout_batch(
        trm.model, trm.variables, trm.puzzle_table, inputs, ids, InferenceSettings(steps=3)
    )
    # q_halt after step 3 of every row; shift so that about half the rows halt by then.
    q = np.asarray(res["last"][0].q_halt)
    params = jax.tree.map(lambda x: x, trm.variables["params"])
    bias = np.array(params["q_head"]["bias"])
    bias[0] -= float(np.median(q))
    params["q_head"]["bias"] = jnp.asarray(bias)
    return {"params": params, "constants": trm.variables["constants"]}


# ---- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"samples": 0}, "samples must be an integer >= 1"),
        ({"sigma": -0.1}, "sigma must be a finite number >= 0"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"select": "best"}, "select must be one of"),
        ({"noise_at": "weights"}, "noise_at must be one of"),
        ({"verify": 1}, "verify must be True or False"),
    ],
)
def test_bad_settings_stop_with_one_sentence(kw, words):
    with pytest.raises(SettingsError) as e:
        InferenceSettings(**kw)
    assert words in str(e.value) and str(e.value).count(". ") == 0


def test_verify_needs_a_task_with_a_rule_check():
    s = InferenceSettings(verify=True)
    assert s.for_task("sudoku") is s and s.for_task("maze") is s
    with pytest.raises(SettingsError, match="verify needs a task with a rule check"):
        s.for_task("arc")
    assert InferenceSettings().for_task("arc").verify is False


def test_defaults_are_the_reference(trm):
    s = InferenceSettings()
    assert (s.samples, s.sigma, s.select, s.verify) == (1, 0.0, "last", False)
    assert s.num_steps(trm.model_config) == trm.model_config.halt_max_steps
    assert InferenceSettings(steps=40).num_steps(trm.model_config) == 40


# ---- selection rules on hand-made arrays ------------------------------------------------------


def _hand_arrays():
    # N = 3 steps, K = 3 trajectories, B = 2 puzzles, L = 1: the prediction is 10*step + k
    # for puzzle 0 and a small set of repeated answers for puzzle 1.
    preds = np.zeros((3, 3, 2, 1), np.int32)
    for n in range(3):
        for k in range(3):
            preds[n, k, 0, 0] = 10 * (n + 1) + k
    preds[2, :, 1, 0] = [7, 8, 7]  # puzzle 1 ends on 7, 8, 7
    preds[:2, :, 1, 0] = 5
    q = np.array(
        [
            [[-1.0, -3.0], [-2.0, -1.0], [0.5, -2.0]],  # step 1: k0, k1, k2 (puzzle 0, puzzle 1)
            [[2.0, -0.5], [1.0, 3.0], [2.0, -1.0]],  # step 2
            [[-4.0, 1.0], [2.0, 0.0], [0.0, 2.0]],  # step 3
        ],
        np.float32,
    )
    return preds, q


def test_select_last_is_the_last_step_of_the_first_trajectory():
    preds, q = _hand_arrays()
    c = tt.select_last(preds, q)
    assert np.asarray(c.answer)[:, 0].tolist() == [30, 7]
    assert np.asarray(c.step).tolist() == [3, 3] and np.asarray(c.trajectory).tolist() == [0, 0]
    assert np.asarray(c.q_halt).tolist() == [-4.0, 1.0]


def test_select_q_halt_takes_the_highest_q_earliest_step_lowest_trajectory():
    preds, q = _hand_arrays()
    c = tt.select_q_halt(preds, q)
    # Puzzle 0: q = 2.0 at (step 2, k0), (step 2, k2) and (step 3, k1) -> step 2, k0 -> 20.
    # Puzzle 1: q = 3.0 at (step 2, k1) -> 5.
    assert np.asarray(c.answer)[:, 0].tolist() == [20, 5]
    assert np.asarray(c.step).tolist() == [2, 2]
    assert np.asarray(c.trajectory).tolist() == [0, 1]


def test_select_vote_takes_the_most_common_final_answer():
    preds, q = _hand_arrays()
    c = tt.select_vote(preds, q)
    # Puzzle 0: three different final answers (one vote each); mean q: -4, 2, 0 -> k1 -> 31.
    # Puzzle 1: 7 has two votes (k0, k2) against one for 8 -> 7, first voter k0.
    assert np.asarray(c.answer)[:, 0].tolist() == [31, 7]
    assert np.asarray(c.trajectory).tolist() == [1, 0]
    assert np.asarray(c.q_halt).tolist() == [2.0, 1.0]


def test_select_vote_ties_go_to_the_higher_mean_q():
    preds = np.array([[[[1]], [[2]], [[2]], [[1]]]], np.int32)  # N=1, K=4, B=1: 1, 2, 2, 1
    q = np.array([[[0.0], [1.0], [3.0], [-1.0]]], np.float32)  # mean q: answer 1 -0.5, 2 2.0
    c = tt.select_vote(preds, q)
    assert int(np.asarray(c.answer)[0, 0]) == 2 and int(np.asarray(c.trajectory)[0]) == 1


def test_select_first_halt_and_its_fallback_to_last():
    preds, q = _hand_arrays()
    c = tt.select_first_halt(preds, q)
    # Puzzle 0: step 1, only k2 has q > 0 -> 12. Puzzle 1: no q > 0 at step 1; at step 2 k1.
    assert np.asarray(c.answer)[:, 0].tolist() == [12, 5]
    assert np.asarray(c.step).tolist() == [1, 2]
    assert np.asarray(c.trajectory).tolist() == [2, 1]
    never = tt.select_first_halt(preds, np.full_like(q, -1.0))
    last = tt.select_last(preds, np.full_like(q, -1.0))
    assert np.array_equal(np.asarray(never.answer), np.asarray(last.answer))
    assert np.asarray(never.step).tolist() == [3, 3]
    # An explicit halting mask (HRM's q_halt > q_continue) overrides q_halt > 0.
    halts = np.zeros(q.shape, bool)
    halts[2, 1, 0] = True
    c = tt.select_first_halt(preds, q, halts)
    assert int(np.asarray(c.answer)[0, 0]) == 31


def test_verify_keeps_the_first_passing_trajectory_else_the_fallback():
    inputs = np.zeros((3, 2), np.int32)
    traj = np.array([[[1, 1], [2, 2], [3, 3]], [[9, 9], [9, 9], [4, 4]]], np.int32)  # K=2, B=3
    fallback = np.full((3, 2), 5, np.int32)
    answers, which = tt.verify_choice(inputs, traj, fallback, lambda x, a: int(a[0]) in (2, 9))
    assert answers.tolist() == [[9, 9], [2, 2], [5, 5]]
    assert which.tolist() == [1, 0, -1]


# ---- the rollout on a tiny checkpoint ---------------------------------------------------------


def test_reference_settings_reproduce_evaluate_bit_for_bit(trm, batch):
    outputs, _ = trm.evaluate(batch)
    res, steps, iters = ro.rollout_batch(
        trm.model, trm.variables, trm.puzzle_table, batch["inputs"], batch["puzzle_identifiers"]
    )
    choice = res["last"][0]
    assert np.array_equal(np.asarray(choice.answer), np.asarray(outputs["preds"]))
    assert np.array_equal(np.asarray(choice.q_halt), np.asarray(outputs["q_halt_logits"]))
    n = trm.model_config.halt_max_steps
    assert int(iters) == n and np.asarray(steps).tolist() == [n] * batch["inputs"].shape[0]
    preds, _, _ = trm.rollout(batch)  # inference's fixed-halting rollout, every step
    assert np.array_equal(np.asarray(choice.answer), np.asarray(preds[-1]))


def test_first_halt_with_one_sample_is_evaluates_adaptive_halting(trm, batch):
    x, ids = batch["inputs"], batch["puzzle_identifiers"]
    v = _halting_variables(trm, x, ids)
    evaluate = jax.jit(functools.partial(evaluate_batch, trm.model), static_argnames="adaptive")
    outputs, _ = evaluate(v["params"], v["constants"], trm.puzzle_table, batch, adaptive=True)
    res, steps, _ = ro.rollout_batch(
        trm.model, v, trm.puzzle_table, x, ids, InferenceSettings(select="first_halt")
    )
    assert np.array_equal(np.asarray(res["first_halt"][0].answer), np.asarray(outputs["preds"]))
    assert np.asarray(res["first_halt"][0].step).tolist() == np.asarray(outputs["steps"]).tolist()
    assert len(set(np.asarray(steps).tolist())) > 1  # the rows really halt at different steps


def test_online_tracking_equals_the_rules_on_the_full_history(trm, batch):
    x, ids = batch["inputs"][:6], batch["puzzle_identifiers"][:6]
    v = _halting_variables(trm, x, ids)
    s = InferenceSettings(samples=3, sigma=0.5, seed=3, steps=4)
    full_p, full_q = [], []
    for n in range(1, 5):  # noise is keyed by (puzzle, trajectory, step): a prefix is a prefix
        sn = dataclasses.replace(s, steps=n)
        res, _, _ = ro.rollout_batch(trm.model, v, trm.puzzle_table, x, ids, sn)
        full_p.append(np.asarray(res["last"][1]))
        full_q.append(np.asarray(res["last"][2]))
    preds, q = np.stack(full_p), np.stack(full_q)
    assert len(np.unique(preds[-1].reshape(3, -1), axis=0)) > 1  # the trajectories differ
    res, _, _ = ro.rollout_batch(trm.model, v, trm.puzzle_table, x, ids, s)
    for rule in tt.SELECT_RULES:
        want = tt.select(rule, preds, q)
        got = res[rule][0]
        for name, a, b in zip(want._fields, want, got):
            assert np.array_equal(np.asarray(a), np.asarray(b)), (rule, name)


def test_same_seed_same_answers_other_seed_other_answers(trm, batch):
    x, ids = batch["inputs"][:4], batch["puzzle_identifiers"][:4]

    def run(seed):
        s = InferenceSettings(samples=2, sigma=1.0, seed=seed, steps=2)
        res, _, _ = ro.rollout_batch(trm.model, trm.variables, trm.puzzle_table, x, ids, s)
        return np.asarray(res["last"][1])

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_compiled_size_does_not_grow_with_the_steps(trm):
    def ops(n):
        s = InferenceSettings(steps=n, samples=2, sigma=0.1)
        text = ro.lower_rollout(trm.model, trm.variables, trm.puzzle_table, 2, s).as_text()
        return sum(1 for line in text.splitlines() if " = " in line)

    a, b = ops(16), ops(64)
    assert a > 50 and abs(a - b) <= 0.02 * a


def test_a_batch_stops_when_all_its_puzzles_have_halted(trm, batch):
    x, ids = batch["inputs"], batch["puzzle_identifiers"]
    params = jax.tree.map(lambda t: t, trm.variables["params"])
    params["q_head"]["bias"] = params["q_head"]["bias"].at[0].set(100.0)  # everyone halts at once
    v = {"params": params, "constants": trm.variables["constants"]}
    s = InferenceSettings(steps=8, select="first_halt")
    _, steps, iters = ro.rollout_batch(trm.model, v, trm.puzzle_table, x, ids, s)
    assert int(iters) == 1 and set(np.asarray(steps).tolist()) == {1}
    _, steps, iters = ro.rollout_batch(
        trm.model, v, trm.puzzle_table, x, ids, InferenceSettings(steps=8)
    )
    assert int(iters) == 8


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_continuous_batching_answers_every_puzzle_once_as_the_plain_loop(trm, batch, sigma):
    x, ids = batch["inputs"][:13], batch["puzzle_identifiers"][:13]
    v = _halting_variables(trm, x, ids)
    s = InferenceSettings(steps=5, samples=2, sigma=sigma, select="first_halt")
    plain = batching.solve_many(trm.model, v, trm.puzzle_table, x, ids, s, batch_size=4)
    stream = batching.solve_many(
        trm.model, v, trm.puzzle_table, x, ids, s, batch_size=4, continuous=True
    )
    assert stream.num_puzzles == 13 and len(set(stream.steps.tolist())) > 1
    assert np.array_equal(stream.steps, plain.steps)
    for rule in tt.SELECT_RULES:
        for a, b in zip(plain.choices[rule], stream.choices[rule]):
            assert np.array_equal(a, b), rule
        assert np.array_equal(plain.trajectories[rule][0], stream.trajectories[rule][0])
    # Continuous batching computes at most what the plain loop does (no slot waits for others).
    assert stream.row_steps <= plain.row_steps
    assert stream.net_applications_per_puzzle > 0


# ---- the sweep script ----------------------------------------------------------------------


def test_sweep_writes_table_plot_and_json(tiny, tmp_path):
    from scripts import test_time_sweep as sweep

    out = tmp_path / "ttc"
    args = ["--workdir", str(tiny["workdir"]), "--max-examples", "4", "--steps", "2"]
    args += ["--samples", "2", "--sigmas", "0,0.5", "--out", str(out), "--name", "tiny"]
    assert sweep.main(args + ["--quiet"]) == 0  # in-process: no second JAX start
    res = json.loads((tmp_path / "ttc.json").read_text())["tiny"]
    configs = {(row["samples"], row["sigma"]) for row in res["rows"]}
    assert configs == {(2, 0.5)}  # no K=2 without noise (identical copies)
    modes = {(row["select"], row["mode"]) for row in res["rows"]}
    assert ("first_halt", "continuous") in modes and ("vote", "plain, shared rollout") in modes
    for row in res["rows"]:
        assert row["puzzles"] == 4 and row["wall_s"] > 0
        assert row["exact_accuracy_verify"] is not None
        if row["mode"] == "plain, shared rollout":
            per_puzzle = row["steps"] * row["samples"] * res["net_applications_per_step"]
            assert row["net_applications_per_puzzle"] == per_puzzle
    text = (tmp_path / "ttc.md").read_text()
    assert "<!-- sweep:tiny -->" in text and "| select | N | K |" in text
    assert (tmp_path / "ttc-tiny.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_bad_arguments_exit_2(tiny, tmp_path, capsys):
    from scripts import test_time_sweep as sweep

    for extra, words in (
        (["--samples", "0"], "--samples needs integers >= 1"),
        (["--sigmas", "-1"], "--sigmas needs numbers >= 0"),
        (["--select", "best"], "--select takes rules from"),
    ):
        args = ["--workdir", str(tiny["workdir"]), "--out", str(tmp_path / "x"), *extra]
        assert sweep.main(args) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_answer_checks_of_sudoku_and_maze(batch):
    from trm_jax.data import tokens as tok

    sudoku = tt.answer_check("sudoku")
    x, y = batch["inputs"][0], batch["labels"][0]
    assert sudoku(x, y)
    wrong = y.copy()
    cell = np.flatnonzero(x == tok.SUDOKU_BLANK)[0]
    wrong[cell] = (y[cell] - 1) % 9 + 2  # another digit: that row now repeats one
    assert not sudoku(x, wrong)
    given = np.flatnonzero(x != tok.SUDOKU_BLANK)[0]
    changed = y.copy()
    changed[given] = (y[given] - 1) % 9 + 2
    assert not sudoku(x, changed)
    maze = tt.answer_check("maze")
    q = tok.maze_to_tokens("S G" + "   " + "###")
    assert maze(q, tok.maze_to_tokens("SoG" + "   " + "###"))
    assert not maze(q, tok.maze_to_tokens("S G" + "ooo" + "###"))
    with pytest.raises(SettingsError, match="rule check"):
        tt.answer_check("arc")
