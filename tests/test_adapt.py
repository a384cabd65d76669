"""Test-time adaptation (trm_jax.adapt): new rows only in embedding mode, kill-and-resume, the
inverse augmentation of voted predictions, bad task files, a valid Kaggle submission."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests import _tiny_run
from trm_jax import adapt
from trm_jax import checkpoint as ckpt
from trm_jax.arc_scoring import ArcVoter, parse_identifier
from trm_jax.data import augment as aug
from trm_jax.data import dataset as ds
from trm_jax.data import pipeline
from trm_jax.data import tokens as tok
from trm_jax.model.trm import TRMModel


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_run.arc(tmp_path_factory)


def _task(rng, n_demo=2, n_test=1, with_output=True):
    def grid():
        return rng.integers(0, 10, tuple(rng.integers(2, 5, 2))).tolist()

    test = [{"input": grid()} | ({"output": grid()} if with_output else {}) for _ in range(n_test)]
    return {"train": [{"input": grid(), "output": grid()} for _ in range(n_demo)], "test": test}


def _tasks_file(path, n_tasks=2, seed=1, **kw):
    rng = np.random.default_rng(seed)
    tasks = {f"new{i}": _task(rng, **kw) for i in range(n_tasks)}
    path.write_text(json.dumps(tasks))
    return tasks


def _weights(workdir):
    info = ckpt.locate(workdir)
    return info, jax.device_get(ckpt.restore_weights(info, TRMModel(info.model_config)))


def _same_bits(a, b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(leaves_a, leaves_b)
    )


def test_embedding_mode_trains_only_the_new_rows(tiny, tmp_path):
    tasks = _tasks_file(tmp_path / "tasks.json")
    out = tmp_path / "adapted"
    opts = adapt.Options(mode="embedding", steps=4, batch_size=8, quiet=True)
    result = adapt.adapt(str(tiny["workdir"]), str(tmp_path / "tasks.json"), str(out), opts)
    _, before = _weights(tiny["workdir"])
    info, after = _weights(out)
    n_old = len(ds.load_identifiers(tiny["data"]))
    names = ds.load_identifiers(out / adapt.DATA_DIR)
    assert names[:n_old] == ds.load_identifiers(tiny["data"])
    assert {adapt.arc_name(n) for n in names[n_old:]} == set(tasks)
    assert result["new_rows"] == len(names) - n_old > len(tasks)  # versions get rows too
    # The run trained with EMA, so its EMA weights are the ones adapted (and evaluated).
    assert _same_bits(after["params"], before["ema_params"])
    assert _same_bits(after["ema_params"], before["ema_params"])
    assert _same_bits(after["constants"], before["constants"])
    table_before, table_after = (
        np.asarray(before["puzzle_table"]),
        np.asarray(after["puzzle_table"]),
    )
    assert table_after[:n_old].tobytes() == table_before[:n_old].tobytes()
    assert np.abs(table_after[n_old : len(names)]).sum() > 0  # the new rows learnt
    assert info.step == 4
    # Kaggle format: every task, two attempts per test input.
    sub = json.loads((out / adapt.SUBMISSION_FILE).read_text())
    assert set(sub) == set(tasks)
    for tid, t in tasks.items():
        assert len(sub[tid]) == len(t["test"])
        assert all(set(a) == {"attempt_1", "attempt_2"} for a in sub[tid])
    assert "ARC/pass@2" in result  # the file has expected outputs


def _adapt_cmd(tiny, tasks, out, steps):
    return [
        sys.executable, "-m", "trm_jax.adapt", "--workdir", str(tiny["workdir"]),
        "--tasks", str(tasks), "--out", str(out), "--mode", "full", "--steps", str(steps),
        "--batch-size", "8", "--checkpoint-every", "2", "--quiet",
    ]  # fmt: skip


def test_killed_adaptation_resumes_to_the_same_result(tiny, tmp_path):
    _tasks_file(tmp_path / "tasks.json", n_tasks=1, seed=2)
    steps = 8
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _adapt_cmd(tiny, tmp_path / "tasks.json", killed, steps),
        cwd=_tiny_run.REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = ckpt._steps_in(killed / ckpt.CHECKPOINT_DIR)
        if any(0 < s < steps for s in done):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = max(ckpt._steps_in(killed / ckpt.CHECKPOINT_DIR))
    assert interrupted_at < steps  # killed mid-way
    opts = adapt.Options(mode="full", steps=steps, batch_size=8, checkpoint_every=2, quiet=True)
    adapt.adapt(str(tiny["workdir"]), str(tmp_path / "tasks.json"), str(killed), opts)  # resume
    whole = tmp_path / "whole"
    adapt.adapt(str(tiny["workdir"]), str(tmp_path / "tasks.json"), str(whole), opts)
    (_, a), (_, b) = _weights(killed), _weights(whole)
    assert _same_bits(a, b)
    _, run = _weights(tiny["workdir"])
    assert not _same_bits(a["params"], run["ema_params"])  # full mode trains the network
    assert (killed / adapt.SUBMISSION_FILE).read_text() == (
        whole / adapt.SUBMISSION_FILE
    ).read_text()


def test_votes_of_augmented_copies_map_back_to_the_original_grid(tiny, tmp_path):
    # Hand-made task: the answer is the input flipped left-right; the "model" below answers
    # every augmented test input with the augmented true answer, so after undoing each
    # version's dihedral transform and colour map every vote must land on the original answer.
    x = [[1, 2, 0], [3, 4, 5]]
    y = [[0, 2, 1], [5, 4, 3]]
    task = {
        "train": [{"input": [[1, 0], [0, 2]], "output": [[0, 1], [2, 0]]}],
        "test": [{"input": x, "output": y}],
    }
    (tmp_path / "t.json").write_text(json.dumps({"hand": task}))
    run = adapt.read_run(str(tiny["workdir"]))
    tasks = adapt.read_tasks(str(tmp_path / "t.json"), run.canvas)
    adapt._build_data(run, tasks, tmp_path)
    data = tmp_path / adapt.DATA_DIR
    names = ds.load_identifiers(data)
    voter = ArcVoter(names)
    n_versions = 0
    for batch in pipeline.eval_batches(data, global_batch_size=4, split="test"):
        keep = batch["valid"]
        ids = batch["puzzle_identifiers"][keep]
        inputs = batch["inputs"][keep]
        preds = []
        for name_id in ids:
            _, tid, perm = parse_identifier(names[name_id])
            preds.append(tok.arc_grid_to_tokens(aug.apply_arc_augmentation(np.array(y), tid, perm)))
        n_versions += len(ids)
        voter.add_batch(inputs, ids, np.zeros(len(ids)), np.stack(preds))
    assert n_versions == run.num_aug + 1
    metrics, sub = voter.result(tasks.test_puzzles, pass_ks=(1,), submission_k=2)
    assert metrics["ARC/pass@1"] == 1.0
    assert sub["hand"][0]["attempt_1"] == y
    (ranked,) = [voter.ranked("hand", x)]
    assert len(ranked) == 1 and ranked[0][1] == n_versions  # one grid got every vote


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"t": {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[1]]}]}},
         "rectangular"),
        ({"t": {"train": [{"input": [[1, 12]], "output": [[1]]}], "test": [{"input": [[1]]}]}},
         "colours outside 0-9"),
        ({"t": {"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[0] * 31]}]}},
         "larger than the 30x30 canvas"),
        ({"t": {"train": [{"input": [[1]], "output": [[1]]}], "test": []}}, "no test inputs"),
        ({"t": {"train": [], "test": [{"input": [[1]]}]}}, "no demonstration pairs"),
    ],
)  # fmt: skip
def test_bad_task_files_stop_with_one_sentence(tiny, tmp_path, capsys, bad, message):
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    argv = ["--workdir", str(tiny["workdir"]), "--tasks", str(tmp_path / "bad.json")]
    code = adapt.main(argv + ["--out", str(tmp_path / "o"), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # nothing written


def test_real_arc_evaluation_tasks_give_a_valid_submission(tiny, tmp_path, shared_dir):
    path = shared_dir / "data" / "arc" / "arc-agi_evaluation_challenges.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    every = json.loads(path.read_text())
    subset = {k: every[k] for k in sorted(every)[:2]}
    (tmp_path / "eval3.json").write_text(json.dumps(subset))
    out = tmp_path / "out"
    argv = ["--workdir", str(tiny["workdir"]), "--tasks", str(tmp_path / "eval3.json")]
    code = adapt.main(argv + ["--out", str(out), "--steps", "1", "--batch-size", "8", "--quiet"])
    assert code == 0
    sub = json.loads((out / adapt.SUBMISSION_FILE).read_text())
    assert set(sub) == set(subset)
    for tid, t in subset.items():
        assert len(sub[tid]) == len(t["test"])
        for attempts in sub[tid]:
            assert set(attempts) == {"attempt_1", "attempt_2"}
            for g in attempts.values():
                tok.check_arc_grid(g)


def test_solve_adapt_answers_an_unseen_task_without_the_blank_row(tiny, tmp_path, capsys):
    from trm_jax import solve

    rng = np.random.default_rng(3)
    (tmp_path / "fresh.json").write_text(json.dumps(_task(rng)))
    argv = ["--workdir", str(tiny["workdir"]), "--arc-task", str(tmp_path / "fresh.json")]
    assert solve.main(argv + ["--adapt", "1"]) == 0
    captured = capsys.readouterr()
    assert "answer from step" in captured.out
    assert "blank row" not in captured.err  # the task has its own adapted rows
    sudoku = ["--workdir", str(tiny["workdir"]), "--sudoku", "1" * 81, "--adapt"]
    assert solve.main(sudoku) == 2
    assert "--adapt needs --arc-task" in capsys.readouterr().err


def test_puzzle_emb_init_std_draws_rows_but_keeps_the_blank_row_and_the_parameters():
    from trm_jax import config as config_lib
    from trm_jax.model.config import ModelConfig
    from trm_jax.steps import init_state, make_setup

    mcfg = ModelConfig(
        vocab_size=12, seq_len=16, num_puzzle_identifiers=5, hidden_size=16, num_heads=2,
        L_layers=1, H_cycles=1, L_cycles=1, puzzle_emb_ndim=16, puzzle_emb_len=1,
        forward_dtype="float32",
    )  # fmt: skip
    states = []
    for std in (0.0, 0.5):
        c = config_lib.default_config()
        c.data.global_batch_size = 2
        c.train.puzzle_emb_init_std = std
        setup = make_setup(TRMModel(mcfg), config_lib.train_config(c), 10)
        states.append(init_state(setup, jax.random.key(0), 5))
    zero, drawn = (np.asarray(s.puzzle_table) for s in states)
    assert not zero.any()  # the reference: zeros
    assert not drawn[0].any() and np.all(drawn[1:] != 0)
    assert 0.2 < drawn[1:].std() < 1.0
    assert _same_bits(states[0].params, states[1].params)


def test_num_aug_sets_the_versions_and_rows_per_task(tiny, tmp_path):
    tasks = _tasks_file(tmp_path / "tasks.json", n_tasks=2)
    rows = {}
    for n in (0, 2):
        opts = adapt.Options(mode="full", steps=0, batch_size=8, num_aug=n, quiet=True)
        out = tmp_path / f"a{n}"
        rows[n] = adapt.adapt(str(tiny["workdir"]), str(tmp_path / "tasks.json"), str(out), opts)[
            "new_rows"
        ]
        names = ds.load_identifiers(out / adapt.DATA_DIR)
        assert {adapt.arc_name(x) for x in names[-rows[n] :]} == set(tasks)
    assert rows[0] == len(tasks)  # the originals only
    assert rows[2] == 3 * len(tasks)  # the original and two augmented versions each
    with pytest.raises(adapt.AdaptError, match="--num-aug"):
        adapt.adapt(
            str(tiny["workdir"]),
            str(tmp_path / "tasks.json"),
            str(tmp_path / "bad"),
            adapt.Options(steps=0, num_aug=-1, quiet=True),
        )


def test_seed_changes_the_batch_order_and_is_recorded(tiny, tmp_path):
    _tasks_file(tmp_path / "tasks.json", n_tasks=2, seed=4)
    weights, seeds = {}, {}
    for name, seed in (("run", None), ("s5", 5)):
        out = tmp_path / name
        opts = adapt.Options(mode="full", steps=4, batch_size=8, seed=seed, quiet=True)
        adapt.adapt(str(tiny["workdir"]), str(tmp_path / "tasks.json"), str(out), opts)
        weights[name] = _weights(out)[1]["params"]
        seeds[name] = json.loads((out / "config.json").read_text())["train"]["seed"]
    run_seed = json.loads((tiny["workdir"] / "config.json").read_text())["train"]["seed"]
    assert seeds == {"run": run_seed, "s5": 5} and run_seed != 5
    assert not _same_bits(weights["run"], weights["s5"])


def test_a_run_whose_dataset_grew_after_training_is_refused(tiny, monkeypatch):
    run = adapt.read_run(str(tiny["workdir"]))
    more = list(run.identifiers) + [f"rebuilt{i}" for i in range(64)]
    monkeypatch.setattr(adapt.ds, "load_identifiers", lambda _: more)
    with pytest.raises(adapt.AdaptError, match="rebuilt or replaced after training"):
        adapt.read_run(str(tiny["workdir"]))
