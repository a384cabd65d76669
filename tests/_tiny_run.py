"""Tiny trained checkpoints shared by the evaluate / solve / inference tests.

Each is built once per test session (a module-level cache, so every test file that asks gets the
same directories): a Sudoku dataset of generated puzzles and a few optimizer steps of a very small
TRM on it, and (for the ARC tests) a synthetic Kaggle-format ARC dataset with a tiny attention
TRM. The models are barely trained; the tests check plumbing and consistency, not accuracy.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np

from configs import sudoku_cpu

REPO = pathlib.Path(__file__).resolve().parents[1]
_CACHE: dict[str, dict] = {}

SUDOKU_EVAL_BATCH = 16


def run_cli(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <module> args...`` from the repository root, text output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _train(config, workdir: pathlib.Path):
    from trm_jax import train

    return train.run(config, str(workdir), verbose=False)


def sudoku(tmp_path_factory) -> dict:
    """{"data", "workdir", "result"}: a tiny Sudoku run with checkpoints at steps 2 and 4."""
    if "sudoku" in _CACHE:
        return _CACHE["sudoku"]
    from data_gen import sudoku as gen

    root = tmp_path_factory.mktemp("tiny_sudoku")
    data = root / "data"
    gen.main(
        ["build", "--out", str(data), "--num-train", "32", "--num-test", "24"]
        + ["--givens", "45", "--seed", "0", "--workers", "1", "--quiet"]
    )
    c = sudoku_cpu.get_config()
    c.data.path = str(data)
    c.data.global_batch_size = 16
    c.data.eval_global_batch_size = SUDOKU_EVAL_BATCH
    c.model.hidden_size = 32
    c.model.puzzle_emb_ndim = 32
    c.model.H_cycles = 2
    c.model.L_cycles = 2
    c.model.halt_max_steps = 3
    c.train.epochs = 2
    c.train.eval_interval = 1
    c.train.max_steps = 4
    c.train.lr_warmup_steps = 1
    c.checkpoint.every_steps = 0
    workdir = root / "run"
    result = _train(c, workdir)
    _CACHE["sudoku"] = {"data": data, "workdir": workdir, "result": result, "config": c}
    return _CACHE["sudoku"]


def _arc_grid(rng, lo=2, hi=6):
    return rng.integers(0, 10, tuple(rng.integers(lo, hi, 2))).tolist()


def write_arc_json(folder: pathlib.Path, seed: int = 0) -> dict:
    """Kaggle-format subsets 'alpha' (training) and 'beta' (test set) of small random puzzles."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for subset, n in (("alpha", 2), ("beta", 2)):
        challenges, solutions = {}, {}
        for i in range(n):
            pid = f"{subset[0]}{i:07d}"
            challenges[pid] = {
                "train": [{"input": _arc_grid(rng), "output": _arc_grid(rng)} for _ in range(2)],
                "test": [{"input": _arc_grid(rng)}],
            }
            solutions[pid] = [_arc_grid(rng)]
            tasks[pid] = {
                "train": challenges[pid]["train"],
                "test": [
                    {"input": challenges[pid]["test"][0]["input"], "output": solutions[pid][0]}
                ],
            }
        (folder / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(challenges))
        (folder / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(solutions))
    return tasks


def arc(tmp_path_factory) -> dict:
    """{"data", "workdir", "tasks"}: a tiny ARC run with checkpoints at steps 1 and 2."""
    if "arc" in _CACHE:
        return _CACHE["arc"]
    from data_gen import arc as arc_gen
    from trm_jax.config import default_config

    root = tmp_path_factory.mktemp("tiny_arc")
    tasks = write_arc_json(root / "json")
    data = root / "data"
    arc_gen.build(
        data,
        subsets=["alpha", "beta"],
        test_set="beta",
        num_aug=3,
        seed=0,
        data_dir=root / "json",
        log=lambda _: None,
    )
    c = default_config()
    c.data.path = str(data)
    c.data.global_batch_size = 8
    c.data.eval_global_batch_size = 8
    c.model.hidden_size = 16
    c.model.num_heads = 2
    c.model.L_layers = 1
    c.model.H_cycles = 1
    c.model.L_cycles = 1
    c.model.halt_max_steps = 2
    c.model.puzzle_emb_ndim = 16
    c.model.puzzle_emb_len = 1
    c.model.forward_dtype = "float32"
    c.train.epochs = 2
    c.train.eval_interval = 1
    c.train.max_steps = 2
    c.train.lr_warmup_steps = 1
    c.train.ema = True
    c.checkpoint.every_steps = 0
    workdir = root / "run"
    result = _train(c, workdir)
    _CACHE["arc"] = {"data": data, "workdir": workdir, "tasks": tasks, "result": result}
    return _CACHE["arc"]


def hrm(tmp_path_factory) -> dict:
    """{"data", "workdir", "result"}: a tiny HRM (configs/sudoku_hrm.py's variant) trained for a
    few steps on the tiny Sudoku dataset; HRM halts on q_halt > q_continue, not q_halt > 0."""
    if "hrm" in _CACHE:
        return _CACHE["hrm"]
    from configs import sudoku_hrm

    data = sudoku(tmp_path_factory)["data"]
    c = sudoku_cpu.get_config()
    c.data.path = str(data)
    c.data.global_batch_size = 16
    c.data.eval_global_batch_size = SUDOKU_EVAL_BATCH
    c.model.hidden_size = 32
    c.model.num_heads = 2
    c.model.L_layers = 1
    c = sudoku_hrm.variant(c)
    c.model.puzzle_emb_ndim = 32
    c.model.halt_max_steps = 4
    c.train.epochs = 2
    c.train.eval_interval = 1
    c.train.max_steps = 4
    c.train.lr_warmup_steps = 1
    c.checkpoint.every_steps = 0
    workdir = tmp_path_factory.mktemp("tiny_hrm") / "run"
    result = _train(c, workdir)
    _set_q_head(workdir)
    _CACHE["hrm"] = {"data": data, "workdir": workdir, "result": result, "config": c}
    return _CACHE["hrm"]


def _set_q_head(workdir: pathlib.Path) -> None:
    """Give the latest checkpoint a Q head on which the two candidate halting rules disagree:
    q_halt = -1 < 0 but > q_continue = -2 on every row and step (four training steps leave both
    near the init bias -5, where no rule fires). Rewrites the partial state ``trm_jax.load``
    restores (parameters, EMA, constants, puzzle table, step)."""
    import shutil

    import jax
    import orbax.checkpoint as ocp

    from trm_jax import checkpoint as ckpt
    from trm_jax.model.trm import TRMModel

    info = ckpt.locate(workdir)
    weights = jax.device_get(ckpt.restore_weights(info, TRMModel(info.model_config)))
    for name in ("params", "ema_params"):
        q_head = weights[name]["q_head"]
        q_head["kernel"] = np.zeros_like(q_head["kernel"])
        q_head["bias"] = np.array([-1.0, -2.0], q_head["bias"].dtype)
    shutil.rmtree(info.path / "state")
    ocp.PyTreeCheckpointer().save(info.path / "state", weights)
