"""python -m trm_jax.evaluate: reference metrics, halting modes, outputs, ARC voting, bad input."""

import json

import numpy as np
import pytest

from tests import _tiny_run
from trm_jax import evaluate


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


@pytest.fixture(scope="session")
def both(tiny):
    """evaluate --halting both --save-preds on the tiny run (in-process)."""
    assert (
        evaluate.main(
            ["--workdir", str(tiny["workdir"]), "--halting", "both", "--save-preds", "--quiet"]
        )
        == 0
    )
    step = tiny["result"].step
    base = tiny["workdir"] / "eval" / f"step_{step}"
    return {
        m: json.loads((base / f"test_{m}" / "metrics.json").read_text())
        for m in ("fixed", "adaptive")
    } | {"base": base}


def test_fixed_halting_reproduces_the_training_runs_evaluation(tiny, both):
    trained = tiny["result"].eval_metrics
    m = both["fixed"]["metrics"]
    for k in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps"):
        assert m[k] == pytest.approx(trained[k], abs=1e-6), k
    assert both["fixed"]["headline"] == {"metric": "exact_accuracy", "value": m["exact_accuracy"]}
    assert both["fixed"]["examples"] == 24 and m["count"] == 24
    assert both["fixed"]["weights"] == "raw"
    assert m["steps"] == tiny["config"].model.halt_max_steps


def test_test_time_settings_score_through_the_rollout(tiny, both, tmp_path, capsys):
    """--steps N_sup (the reference, given as a setting) goes through batching.solve_many and
    predicts what the reference path predicts; K = 2 noisy trajectories with --verify report
    verify in its own column, puzzles/s and net applications per puzzle next to the accuracy."""
    N, step = tiny["config"].model.halt_max_steps, tiny["result"].step
    base = ["--workdir", str(tiny["workdir"]), "--quiet", "--out", str(tmp_path)]
    assert evaluate.main(base + ["--steps", str(N), "--save-preds"]) == 0
    out_dir = tmp_path / f"step_{step}" / f"test_last{N}_K1_sigma0_seed0"
    rec = json.loads((out_dir / "metrics.json").read_text())
    assert rec["settings"]["label"] == f"last@{N}" and rec["examples"] == 24
    for k in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps"):
        assert rec["metrics"][k] == pytest.approx(both["fixed"]["metrics"][k], abs=1e-6), k
    ref = np.load(both["base"] / "test_fixed" / "predictions.npz")
    got = np.load(out_dir / "predictions.npz")
    np.testing.assert_array_equal(got["preds"], ref["preds"])
    np.testing.assert_array_equal(got["example_index"], ref["example_index"])
    capsys.readouterr()
    tuned = ["--samples", "2", "--sigma", "0.1", "--select", "vote", "--verify"]
    assert evaluate.main(base + tuned) == 0
    out = capsys.readouterr().out
    assert f"vote@{N} K=2 sigma=0.1 +verify" in out
    assert "exact_accuracy_verify" in out and "puzzles_per_second" in out
    assert "net_applications_per_puzzle" in out
    rec = json.loads(
        (tmp_path / f"step_{step}" / f"test_vote{N}_K2_sigma0.1_seed0_verify" / "metrics.json")
        .read_text()
    )  # fmt: skip
    m = rec["metrics"]
    assert 0.0 <= m["exact_accuracy_verify"] <= 1.0 and m["puzzles_per_second"] > 0
    c = tiny["config"].model
    assert m["net_applications_per_puzzle"] >= 2 * N * c.H_cycles * (c.L_cycles + 1)


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--samples", "0"], "samples must be an integer >= 1"),
        (["--sigma", "-1"], "sigma must be a finite number >= 0"),
        (["--steps", "0"], "steps must be an integer >= 1"),
        (["--select", "best"], "select must be one of"),
        (["--samples", "2", "--sigma", "0.1", "--halting", "adaptive"], "--select first_halt"),
    ],
)
def test_bad_test_time_settings_exit_2_with_one_sentence(tiny, capsys, extra, words):
    assert evaluate.main(["--workdir", str(tiny["workdir"]), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_adaptive_halting_uses_no_more_steps_than_fixed(both):
    fixed, adaptive = both["fixed"]["metrics"], both["adaptive"]["metrics"]
    assert 1 <= adaptive["steps"] <= fixed["steps"]
    preds = np.load(both["base"] / "test_adaptive" / "predictions.npz")
    assert np.all(preds["steps"] <= both["adaptive"]["halt_max_steps"])
    assert preds["steps"].mean() == pytest.approx(adaptive["steps"])


def test_per_example_predictions_cover_the_split_in_order(tiny, both):
    preds = np.load(both["base"] / "test_fixed" / "predictions.npz")
    labels = np.load(tiny["data"] / "test" / "all__labels.npy")
    np.testing.assert_array_equal(preds["example_index"], np.arange(len(labels)))
    assert preds["preds"].shape == labels.shape
    exact = np.mean(np.all(preds["preds"] == labels, axis=1))
    assert exact == pytest.approx(both["fixed"]["metrics"]["exact_accuracy"])


def test_table_shows_both_halting_rules(tiny, both, capsys):
    assert (
        evaluate.main(
            [
                "--workdir",
                str(tiny["workdir"]),
                "--halting",
                "both",
                "--quiet",
                "--max-examples",
                "5",
                "--out",
                str(both["base"].parent / "small"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fixed" in out and "adaptive" in out and "mean steps" in out and "5 examples" in out
    small = json.loads(
        (
            both["base"].parent / "small" / both["base"].name / "test_fixed" / "metrics.json"
        ).read_text()
    )
    assert small["metrics"]["count"] == 5


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--step", "999"], "no checkpoint for step 999"),
        (["--ensemble", "2,4"], "--ensemble pools ARC votes"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny, extra, message):
    r = _tiny_run.run_cli("trm_jax.evaluate", "--workdir", tiny["workdir"], "--quiet", *extra)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_missing_workdir_and_foreign_dataset(tiny, tmp_path):
    r = _tiny_run.run_cli("trm_jax.evaluate", "--workdir", tmp_path / "nope")
    assert r.returncode == 2 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    # A maze dataset under a Sudoku model: vocabulary / sequence length mismatch.
    from data_gen import maze

    maze.main(
        [
            "build",
            "--out",
            str(tmp_path / "maze"),
            "--num-train",
            "2",
            "--num-test",
            "2",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    r = _tiny_run.run_cli(
        "trm_jax.evaluate", "--workdir", tiny["workdir"], "--dataset", tmp_path / "maze"
    )
    assert r.returncode == 2, r.stderr
    assert "vocabulary 6 and sequence length 900" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.slow
def test_arc_scoring_submission_and_explicit_ensemble(tmp_path_factory):
    arc = _tiny_run.arc(tmp_path_factory)
    workdir = arc["workdir"]
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
    assert len(steps) >= 2
    one = evaluate.main(["--workdir", str(workdir), "--quiet"])
    assert one == 0
    single = json.loads(
        (workdir / "eval" / f"step_{steps[-1]}" / "test_fixed" / "metrics.json").read_text()
    )
    assert single["headline"]["metric"] == "ARC/pass@2"
    assert single["weights"] == "ema"  # the run trained with train.ema
    for k in (1, 2, 5, 10, 100, 1000):
        assert 0.0 <= single["metrics"][f"ARC/pass@{k}"] <= 1.0
    sub = json.loads(
        (workdir / "eval" / f"step_{steps[-1]}" / "test_fixed" / "submission.json").read_text()
    )
    test_puzzles = json.loads((arc["data"] / "test_puzzles.json").read_text())
    assert set(sub) == set(test_puzzles)
    for pid, attempts in sub.items():
        assert len(attempts) == len(test_puzzles[pid]["test"])
        assert all(set(a) == {"attempt_1", "attempt_2"} for a in attempts)

    pooled = ",".join(map(str, steps[-2:]))
    assert evaluate.main(["--workdir", str(workdir), "--ensemble", pooled, "--quiet"]) == 0
    name = "ensemble_" + "+".join(map(str, steps[-2:]))
    ens = json.loads((workdir / "eval" / name / "test_fixed" / "metrics.json").read_text())
    assert ens["steps"] == steps[-2:]
    assert set(ens["per_checkpoint"]) == {str(s) for s in steps[-2:]}
    assert ens["per_checkpoint"][str(steps[-1])]["ARC/pass@2"] == pytest.approx(
        single["metrics"]["ARC/pass@2"]
    )
    # Test-time settings: every trajectory votes next to the augmentations; verify is refused.
    tuned = ["--workdir", str(workdir), "--quiet", "--samples", "2", "--sigma", "0.3"]
    assert evaluate.main(tuned) == 0
    out = workdir / "eval" / f"step_{steps[-1]}" / "test_last2_K2_sigma0.3_seed0"
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["metrics"]["ARC/pass@2"] <= 1.0
    assert evaluate.main(tuned + ["--verify"]) == 2


def test_max_examples_drops_the_rest_from_every_sum(tiny):
    """Rows past --max-examples / data.eval_max_examples leave every sum, q_halt_loss included
    (padded with them, a batch of 8 must score 4 examples exactly as a batch of 4 does)."""
    from trm_jax import inference

    trm = inference.load(tiny["workdir"])
    data = str(tiny["data"])
    whole = evaluate.evaluate_split(trm, data, "test", batch_size=4, max_examples=4)
    padded = evaluate.evaluate_split(trm, data, "test", batch_size=8, max_examples=4)
    assert whole.examples == padded.examples == 4 and padded.metrics["count"] == 4
    for k in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss"):
        assert padded.metrics[k] == pytest.approx(whole.metrics[k], rel=1e-5, abs=1e-7), k


def test_arc_training_keeps_the_best_checkpoint_by_pass_at_2(
    tmp_path_factory, tmp_path, monkeypatch
):
    import jax.numpy as jnp

    from trm_jax import checkpoint as ckpt
    from trm_jax import config as config_lib
    from trm_jax import train

    arc = _tiny_run.arc(tmp_path_factory)
    config = config_lib.from_json((arc["workdir"] / "config.json").read_text())
    saved = {}
    real_save = ckpt.save

    def save(manager, step, state, data_state, meta, metrics=None):
        saved[step] = metrics
        real_save(manager, step, state, data_state, meta, metrics)

    monkeypatch.setattr(ckpt, "save", save)
    result = train.run(config, str(tmp_path / "run"), verbose=False)
    for k in (1, 2):
        assert 0.0 <= result.eval_metrics[f"ARC/pass@{k}"] <= 1.0
    # Each evaluation's checkpoint is ranked by the headline, ARC pass@2 (not by the per-row
    # exact accuracy of the augmented copies).
    assert saved[result.step]["headline"] == pytest.approx(result.eval_metrics["ARC/pass@2"])
    assert saved[result.step]["exact_accuracy"] == result.eval_metrics["exact_accuracy"]

    # keep_best follows that headline: pass@2 0.5 at step 2 beats exact accuracy 0.9 at step 1.
    manager = ckpt.make_manager(tmp_path / "best", keep=1, keep_best=True)
    state = {"w": jnp.zeros((2,))}
    for step, exact, pass2 in ((1, 0.9, 0.1), (2, 0.1, 0.5), (3, 0.5, 0.2)):
        real_save(manager, step, state, {}, {}, {"exact_accuracy": exact, "headline": pass2})
    assert sorted(manager.all_steps()) == [2, 3]  # the latest and the best
    manager.close()


def test_sudoku_results_break_exact_accuracy_down_by_difficulty(tiny, both, capsys):
    ratings = np.load(tiny["data"] / "test" / "all__rating.npy")
    for mode in ("fixed", "adaptive"):
        b = both[mode]["by_difficulty"]
        assert b["examples"] == 24
        assert b["exact_accuracy"] == pytest.approx(both[mode]["metrics"]["exact_accuracy"])
        rows = {r["bucket"]: r["examples"] for r in b["givens"]}
        assert rows == {"22-27": 0, "28-33": 0, "34-39": 0, "40-45": 24}  # a 45-givens set
        search = {r["bucket"]: r["examples"] for r in b["search"]}
        assert search == {
            "rating 0 (singles)": int((ratings == 0).sum()),
            "rating > 0 (search)": int((ratings > 0).sum()),
        }
    # The training run's final evaluation carries (and prints) the same table.
    trained = tiny["result"].by_difficulty
    assert trained == both["fixed"]["by_difficulty"]
    assert evaluate.main(["--workdir", str(tiny["workdir"]), "--quiet"]) == 0
    assert "fixed: Exact accuracy by difficulty (24 puzzles):" in capsys.readouterr().out
