"""python -m trm_jax.train on hostile input: one sentence and exit 2 (130 / 143 for signals),
nothing lost; one run per work dir; a signal saves and the resumed run equals an uninterrupted
one."""

import errno
import json
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import _tiny_run
from tests._cli_checks import one_sentence, snapshot
from tests.conftest import REPO
from trm_jax import checkpoint as ckpt
from trm_jax import train_cli

DRIVER = str(REPO / "tests" / "_train_driver.py")
CONFIG = "--config=configs/sudoku_cpu.py"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_run.sudoku(tmp_path_factory)


def _tiny_overrides(data, **extra) -> list[str]:
    """The overrides that make configs/sudoku_cpu.py the config of tests/_tiny_run.sudoku."""
    kw = {
        "data.path": data,
        "data.global_batch_size": 16,
        "data.eval_global_batch_size": _tiny_run.SUDOKU_EVAL_BATCH,
        "model.hidden_size": 32,
        "model.puzzle_emb_ndim": 32,
        "model.H_cycles": 2,
        "model.L_cycles": 2,
        "model.halt_max_steps": 3,
        "train.epochs": 2,
        "train.eval_interval": 1,
        "train.max_steps": 4,
        "train.lr_warmup_steps": 1,
        "checkpoint.every_steps": 0,
    }
    kw.update(extra)
    return [f"--config.{k}={v}" for k, v in kw.items()]


def _main(argv, capsys) -> tuple[int, str, str]:
    code = train_cli.main(["train", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _refused(argv, capsys) -> str:
    code, _, err = _main(argv, capsys)
    assert code == 2, err
    return one_sentence(err)


# ---- the config file and the work dir ------------------------------------------------------


@pytest.mark.parametrize(
    "kind,words",
    [("syntax", "syntax error at line 2"), ("no_get", "no get_config"), ("dir", "directory")],
)
def test_a_config_file_that_does_not_load(tmp_path, capsys, kind, words):
    path = tmp_path / "cfg.py"
    if kind == "syntax":
        path.write_text("x = 1\ndef get_config(:\n")
    elif kind == "no_get":
        path.write_text("x = 1\n")
    else:
        path.mkdir()
    assert words in _refused([f"--config={path}", f"--workdir={tmp_path / 'w'}"], capsys)
    assert not (tmp_path / "w").exists()


def test_a_workdir_that_is_a_file(tiny, tmp_path, capsys):
    f = tmp_path / "w"
    f.write_text("keep")
    err = _refused([CONFIG, f"--workdir={f}", *_tiny_overrides(tiny["data"])], capsys)
    assert "is a file" in err and f.read_text() == "keep"


def test_negative_max_steps_is_blamed_on_max_steps(tiny, tmp_path, capsys):
    argv = [CONFIG, f"--workdir={tmp_path / 'w'}"]
    err = _refused(argv + _tiny_overrides(tiny["data"], **{"train.max_steps": -5}), capsys)
    assert "max_steps" in err and "epochs" not in err


# ---- restarts --------------------------------------------------------------------------------


def _copy(tiny, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(tiny["workdir"], work, ignore=shutil.ignore_patterns("eval"))
    return work


def test_a_no_op_restart_keeps_config_json(tiny, tmp_path, capsys):
    work = _copy(tiny, tmp_path)
    before = (work / "config.json").read_bytes()
    argv = [CONFIG, f"--workdir={work}", *_tiny_overrides(tiny["data"], **{"train.lr": 0.5})]
    code, out, err = _main(argv + ["--quiet"], capsys)
    assert code == 0 and "Nothing to train" in out, err
    assert (work / "config.json").read_bytes() == before
    assert json.loads(before)["train"]["lr"] != 0.5


def test_resuming_from_a_corrupted_latest_checkpoint(tiny, tmp_path, capsys):
    work = _copy(tiny, tmp_path)
    latest = max(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    for f in (work / "checkpoints" / str(latest) / "state").glob("ocdbt.process_0/d/*"):
        with open(f, "r+b") as fh:
            fh.truncate(10)
    before = snapshot(work)
    argv = [CONFIG, f"--workdir={work}", *_tiny_overrides(tiny["data"], **{"train.max_steps": 6})]
    err = _refused(argv + ["--quiet"], capsys)
    assert f"checkpoints/{latest} cannot be restored" in err and "move it out" in err
    assert snapshot(work) == before


# ---- failures during the run ---------------------------------------------------------------


def test_nan_before_any_checkpoint_reads_correctly(tiny, tmp_path, capsys):
    ov = _tiny_overrides(tiny["data"], **{"train.lr": 1e30, "train.log_every": 1})
    code, _, err = _main([CONFIG, f"--workdir={tmp_path / 'w'}", *ov, "--quiet"], capsys)
    assert code == 1, err
    line = one_sentence(err)
    assert "no checkpoint had been saved yet in" in line and "last good no" not in line


def test_disk_full_during_a_save(tiny, tmp_path, capsys, monkeypatch):
    def save(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    ov = _tiny_overrides(tiny["data"], **{"checkpoint.every_steps": 1, "train.max_steps": 2})
    err = _refused([CONFIG, f"--workdir={tmp_path / 'w'}", *ov, "--quiet"], capsys)
    assert "disk is full" in err and "needs about" in err and "free" in err
    assert "checkpoint.keep" in err
    assert not [p for p in (tmp_path / "w" / "checkpoints").iterdir() if p.name.isdigit()]


def test_resource_exhausted_from_the_writer_is_a_full_disk(tmp_path, monkeypatch):
    # Tensorstore reports a full disk as RESOURCE_EXHAUSTED (wrapped in other errors).
    def save(self, *a, **k):
        try:
            raise ValueError("RESOURCE_EXHAUSTED: Error writing local file")
        except ValueError as e:
            raise RuntimeError("Checkpoint save failed") from e

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    manager = ckpt.make_manager(tmp_path / "w")
    state = {"w": np.zeros((256, 1024), np.float32)}
    with pytest.raises(ckpt.DiskFullError, match=r"needs about 1\.0 MiB") as e:
        ckpt.save(manager, 1, state, {}, {})
    assert "\n" not in str(e.value) and str(e.value).endswith(".")


# ---- one run per work dir --------------------------------------------------------------------


def test_a_second_start_is_refused_and_a_killed_holder_leaves_no_lock(tiny, tmp_path, capsys):
    work = tmp_path / "w"
    ov = _tiny_overrides(tiny["data"], **{"train.max_steps": 100000, "train.epochs": 100000})
    holder = subprocess.Popen(
        [sys.executable, "-m", "trm_jax.train", CONFIG, f"--workdir={work}", *ov, "--quiet"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = work / ".trm_jax.lock"
        deadline = time.time() + 120
        while not (lock.is_file() and str(holder.pid) in lock.read_text()):
            assert time.time() < deadline and holder.poll() is None, "the holder never locked"
            time.sleep(0.2)
        second = [CONFIG, f"--workdir={work}", *_tiny_overrides(tiny["data"]), "--quiet"]
        err = _refused(second + ["--config.train.lr=0.5"], capsys)
        assert f"pid {holder.pid}" in err and "in use" in err
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL leaves the lock file behind, but not the lock: a new start takes over.
    code, out, err = _main(second + ["--config.train.max_steps=1"], capsys)
    assert code == 0, err


# ---- signals ---------------------------------------------------------------------------------


def _signal_overrides(data) -> list[str]:
    return _tiny_overrides(
        data, **{"train.max_steps": 8, "train.epochs": 4, "train.eval_interval": 2}
    )


def _drive(workdir, mode, overrides):
    # The runs share the session's JAX compilation cache (tests/conftest.py) through os.environ.
    return subprocess.run(
        [sys.executable, DRIVER, str(workdir), mode, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def straight(tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("straight") / "w"
    res = _drive(work, "plain", _signal_overrides(tiny["data"]))
    assert res.returncode == 0, res.stderr[-3000:]
    return np.load(work / "final.npz")


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_saves_and_the_resumed_run_is_bit_identical(tiny, straight, tmp_path, sig, code):
    at = random.randrange(1, 8)  # 8 steps; a random step boundary (shown on failure)
    ov = _signal_overrides(tiny["data"])
    work = tmp_path / "w"
    stopped = _drive(work, f"signal_at={at}:{sig}", ov)
    assert stopped.returncode == code, (at, stopped.stderr[-3000:])
    assert "Traceback" not in stopped.stderr
    lines = [x for x in stopped.stderr.strip().splitlines() if x.strip()]
    assert f"{sig} received" in lines[0]
    assert lines[-1].startswith(f"{sig} at step {at}: saved checkpoint {work}"), lines
    assert "resume with `python -m trm_jax.train" in lines[-1]
    assert (work / "checkpoints" / str(at)).is_dir()
    assert not (work / "final.npz").exists()
    resumed = _drive(work, "plain", ov)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = np.load(work / "final.npz")
    assert sorted(final.files) == sorted(straight.files)
    for k in final.files:
        np.testing.assert_array_equal(final[k], straight[k], err_msg=f"{k} (signal at {at})")
