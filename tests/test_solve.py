"""python -m trm_jax.solve: answers equal evaluate's, trace and PNG, every bad input exits 2."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests import _tiny_run
from trm_jax import inference as inf


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


@pytest.fixture(scope="session")
def trm(tiny):
    return inf.load(tiny["workdir"])


def _as_string(tokens) -> str:
    return "".join("." if t == 1 else str(int(t) - 1) for t in tokens)


def _answer_line(stdout: str) -> str:
    return [line for line in stdout.splitlines() if line.startswith("answer: ")][0][8:]


@pytest.fixture(scope="session")
def scored(tiny, trm):
    """Per-example predictions of the evaluate path (fixed and adaptive) on the test split."""
    from trm_jax import evaluate

    kw = dict(batch_size=_tiny_run.SUDOKU_EVAL_BATCH, keep_predictions=True)
    return {
        mode: evaluate.evaluate_split(
            trm, str(tiny["data"]), "test", adaptive=mode == "adaptive", **kw
        )
        for mode in ("fixed", "adaptive")
    }


def test_solve_gives_the_prediction_evaluate_scored(tiny, trm, scored):
    inputs = np.load(tiny["data"] / "test" / "all__inputs.npy")
    for mode, result in scored.items():
        preds = result.predictions
        for i in (0, 5, len(inputs) - 1):
            answer = trm.solve(
                _as_string(inputs[i]), halting=mode, batch_size=_tiny_run.SUDOKU_EVAL_BATCH
            )
            expected = np.where((preds["preds"][i] >= 2), preds["preds"][i] - 1, 0)
            np.testing.assert_array_equal(answer.reshape(-1), expected, err_msg=f"{mode} {i}")
    # The command line prints the same answer.
    i = 3
    r = _tiny_run.run_cli(
        "trm_jax.solve",
        "--workdir",
        tiny["workdir"],
        "--sudoku",
        _as_string(inputs[i]),
        "--batch-size",
        _tiny_run.SUDOKU_EVAL_BATCH,
    )
    assert r.returncode == 0, r.stderr
    expected = "".join(
        str(t - 1) if t >= 2 else "." for t in scored["fixed"].predictions["preds"][i]
    )
    assert _answer_line(r.stdout) == expected
    assert "valid solution that keeps the givens: " in r.stdout


def test_adaptive_halting_reports_no_more_steps_than_fixed(scored, trm):
    N = trm.model_config.halt_max_steps
    assert scored["fixed"].metrics["steps"] == N
    assert 1 <= scored["adaptive"].metrics["steps"] <= scored["fixed"].metrics["steps"]
    assert np.all(scored["adaptive"].predictions["steps"] <= N)


def test_trace_png_and_several_puzzles_from_a_file(tiny, trm, tmp_path):
    inputs = np.load(tiny["data"] / "test" / "all__inputs.npy")
    f = tmp_path / "puzzles.txt"
    f.write_text(_as_string(inputs[0]) + "\n\n" + _as_string(inputs[1]) + "\n")
    png = tmp_path / "strip.png"
    r = _tiny_run.run_cli(
        "trm_jax.solve",
        "--workdir",
        tiny["workdir"],
        "--file",
        f,
        "--trace",
        "--png",
        png,
        "--halting",
        "adaptive",
    )
    assert r.returncode == 0, r.stderr
    N = trm.model_config.halt_max_steps
    assert r.stdout.count("q_halt") == 2 * (N + 1)  # a heading and N trace lines per puzzle
    assert f"{f} line 1" in r.stdout and f"{f} line 3" in r.stdout
    for i in (1, 2):
        data = (tmp_path / f"strip_{i}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        # input + N frames in one row: wider than tall, and not absurdly large.
        assert 200 < height < width < 2500 and 10_000 < len(data) < 2_000_000


def test_test_time_settings_in_solve(tiny, trm, tmp_path, capsys):
    from trm_jax import solve

    inputs = np.load(tiny["data"] / "test" / "all__inputs.npy")
    N = trm.model_config.halt_max_steps
    w = ["--workdir", str(tiny["workdir"])]
    # The reference given as a setting answers as the reference path does.
    assert solve.main(w + ["--sudoku", _as_string(inputs[2]), "--steps", str(N)]) == 0
    out = capsys.readouterr().out
    expected = "".join(str(int(d)) if d else "." for d in trm.solve(_as_string(inputs[2])).ravel())
    assert _answer_line(out) == expected and f"last@{N}" in out
    f = tmp_path / "puzzles.txt"
    f.write_text("\n".join(_as_string(x) for x in inputs[:3]) + "\n")
    tuned = ["--samples", "2", "--sigma", "0.2", "--select", "vote", "--verify"]
    assert solve.main(w + ["--file", str(f)] + tuned) == 0
    out = capsys.readouterr().out
    assert out.count("answer from step") == 3 and out.count("verify: ") == 3
    assert "puzzles/s" in out and "net applications per puzzle" in out


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--samples", "0"], "samples must be an integer >= 1"),
        (["--sigma", "-0.5"], "sigma must be a finite number >= 0"),
        (["--steps", "0"], "steps must be an integer >= 1"),
        (["--samples", "2", "--sigma", "0.1", "--trace"], "use --select first_halt"),
    ],
)
def test_bad_test_time_settings_exit_2(tiny, capsys, extra, words):
    from trm_jax import solve

    assert solve.main(["--workdir", str(tiny["workdir"]), "--sudoku", "." * 81, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and words in captured.err, captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""


def test_viz_draws_maze_and_arc_frames(tmp_path):
    from trm_jax import viz

    maze = np.full((30, 30), " ")
    maze[0, :] = "#"
    maze[2, 2], maze[5, 5] = "S", "G"
    step1 = maze.copy()
    step1[3, 2:5] = "o"
    trace = inf.Trace(maze, [step1, step1], np.array([-1.0, 2.0]), 2)
    out = viz.save_refinement(tmp_path / "maze.png", trace, "maze")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    arc = inf.Trace(
        np.zeros((3, 3), int), [np.ones((2, 4), int), np.ones((2, 4), int)], np.array([0.5, 1.5]), 1
    )
    out = viz.save_refinement(tmp_path / "arc.png", arc, "arc")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert viz.changed_cells(np.ones((2, 2)), np.ones((3, 3))) is None


def _maze_text(with_s=True) -> str:
    from data_gen import maze

    question, _, _ = maze.generate_one(0, 0, maze.MazeSpec())
    if not with_s:
        question = question.replace("S", " ")
    return "\n".join(question[i : i + 30] for i in range(0, 900, 30)) + "\n"


def test_every_bad_input_is_one_line_and_exit_2(tiny, tmp_path):
    good = "." * 81
    (tmp_path / "no_s.txt").write_text(_maze_text(with_s=False))
    (tmp_path / "maze.txt").write_text(_maze_text())
    (tmp_path / "big.json").write_text(json.dumps({"train": [], "test": [{"input": [[0] * 31]}]}))
    (tmp_path / "colour.json").write_text(json.dumps({"train": [], "test": [{"input": [[1, 12]]}]}))
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    w = ["--workdir", tiny["workdir"]]
    cases = [
        (w + ["--sudoku", good[:80]], "must have 81 characters, got 80"),
        (w + ["--sudoku", "x" + good[1:]], "may hold only '.' and '0'-'9'"),
        (w + ["--sudoku", "1" + "." * 8 + "1" + "." * 71], "digit 1 appears twice in column 1"),
        (w + ["--maze", tmp_path / "no_s.txt"], "has no 'S'"),
        (w + ["--arc-task", tmp_path / "big.json"], "is 1x31, larger than the 30x30 canvas"),
        (w + ["--arc-task", tmp_path / "colour.json"], "colours outside 0-9"),
        (["--workdir", tmp_path / "missing", "--sudoku", good], "does not exist"),
        (["--workdir", tmp_path / "empty_run", "--sudoku", good], "has no checkpoints"),
        (w + ["--maze", tmp_path / "maze.txt"], "is a maze puzzle but the checkpoint"),
        (w + ["--sudoku", good, "--halting", "never"], "invalid choice"),
    ]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: _tiny_run.run_cli("trm_jax.solve", *c[0]), cases))
    for (args, message), r in zip(cases, results):
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and message in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""


@pytest.mark.slow
def test_arc_task_seen_and_unseen(tmp_path_factory, tmp_path):
    arc = _tiny_run.arc(tmp_path_factory)
    seen = {"b0000000": arc["tasks"]["b0000000"]}
    (tmp_path / "seen_v.json").write_text(json.dumps(seen))
    r = _tiny_run.run_cli(
        "trm_jax.solve", "--workdir", arc["workdir"], "--arc-task", tmp_path / "seen_v.json",
        "--verify",
    )  # fmt: skip
    assert r.returncode == 2 and "verify needs a task with a rule check" in r.stderr
    unseen = {"zzzz": arc["tasks"]["b0000001"]}
    for name, task in (("seen", seen), ("unseen", unseen)):
        (tmp_path / f"{name}.json").write_text(json.dumps(task))
    r = _tiny_run.run_cli(
        "trm_jax.solve",
        "--workdir",
        arc["workdir"],
        "--arc-task",
        tmp_path / "seen.json",
        "--png",
        tmp_path / "arc.png",
    )
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr and "matches the expected output: " in r.stdout
    assert (tmp_path / "arc.png").exists()
    r = _tiny_run.run_cli(
        "trm_jax.solve", "--workdir", arc["workdir"], "--arc-task", tmp_path / "unseen.json"
    )
    assert r.returncode == 0, r.stderr
    assert "not seen in training" in r.stderr and "blank row 0" in r.stderr


def _adaptive_steps_of_solve_and_evaluate(run: dict, tmp_path, name: str):
    """Steps per test puzzle: (`solve --halting adaptive`, `evaluate --halting adaptive`)."""
    inputs = np.load(run["data"] / "test" / "all__inputs.npy")
    puzzles = tmp_path / f"{name}.txt"
    puzzles.write_text("\n".join(_as_string(x) for x in inputs) + "\n")
    out = tmp_path / f"{name}_eval"
    common = ["--workdir", run["workdir"], "--halting", "adaptive"]
    batch = ["--batch-size", _tiny_run.SUDOKU_EVAL_BATCH]
    with ThreadPoolExecutor(2) as pool:
        solve = pool.submit(_tiny_run.run_cli, "trm_jax.solve", *common, *batch, "--file", puzzles)
        ev = pool.submit(
            _tiny_run.run_cli, "trm_jax.evaluate", *common, *batch, "--save-preds", "--out", out
        )
        solve, ev = solve.result(), ev.result()
    assert solve.returncode == 0, solve.stderr
    assert ev.returncode == 0, ev.stderr
    solved = [
        int(line.split("answer from step ")[1].split()[0])
        for line in solve.stdout.splitlines()
        if " answer from step " in line
    ]
    (preds,) = out.glob("*/test_adaptive/predictions.npz")
    return np.array(solved), np.load(preds)["steps"]


@pytest.mark.parametrize("arch", ["trm", "hrm"])
def test_adaptive_halting_of_solve_equals_evaluate_on_trm_and_hrm(arch, tmp_path_factory, tmp_path):
    """One halting rule: solve and trm.solve stop where evaluate (and training) stop, also for
    HRM, whose rule (q_halt > q_continue) differs from q_halt > 0 on this checkpoint."""
    run = _tiny_run.sudoku(tmp_path_factory) if arch == "trm" else _tiny_run.hrm(tmp_path_factory)
    model = inf.load(run["workdir"])
    assert model.model_config.arch == arch
    inputs = np.load(run["data"] / "test" / "all__inputs.npy").astype(np.int32)
    preds, q, qc = model.solve_tokens(inputs, np.zeros(len(inputs)), _tiny_run.SUDOKU_EVAL_BATCH)
    rule = inf.halt_steps(model.halts(q, qc), "adaptive")
    q_halt_only = inf.halt_steps(q > 0, "adaptive")
    if arch == "hrm":  # the two rules disagree here (step 1 vs N), so the test tells them apart
        assert (rule == 1).all() and (q_halt_only == len(q)).all(), (q, qc)
    else:
        np.testing.assert_array_equal(rule, q_halt_only)
    solved, evaluated = _adaptive_steps_of_solve_and_evaluate(run, tmp_path, arch)
    assert len(solved) == len(evaluated) == len(inputs)
    np.testing.assert_array_equal(solved, evaluated)
    np.testing.assert_array_equal(rule, evaluated)
    for i in (0, len(inputs) - 1):
        _, trace = model.solve(_as_string(inputs[i]), halting="adaptive", trace=True, batch_size=16)
        assert trace.halt_step == evaluated[i]
