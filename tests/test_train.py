"""Training: optimizer maths, sharding, multi-process, exact resume, atomic saves, errors."""

import functools
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import REPO
from trm_jax.act import act_forward, gather_puzzle_rows, reset_carry, step_loss
from trm_jax.config import TrainConfig
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel
from trm_jax.steps import init_state, make_setup, train_step

DRIVER = str(REPO / "tests" / "_train_driver.py")

TINY_MODEL = dict(
    vocab_size=11,
    seq_len=16,
    num_puzzle_identifiers=16,
    hidden_size=32,
    num_heads=2,
    puzzle_emb_ndim=32,
    puzzle_emb_len=2,
    H_cycles=2,
    L_cycles=2,
    L_layers=2,
    halt_max_steps=3,
    forward_dtype="float32",
    halt_exploration_prob=0.1,
)
TINY_TRAIN = dict(
    seed=0,
    epochs=1,
    eval_interval=1,
    max_steps=0,
    time_budget_s=0.0,
    lr=1e-3,
    lr_min_ratio=1.0,
    lr_decay_end="steps",
    lr_warmup_steps=2,
    beta1=0.9,
    beta2=0.95,
    weight_decay=0.1,
    puzzle_emb_lr=1e-2,
    puzzle_emb_weight_decay=0.1,
    ema=True,
    ema_rate=0.9,
    deep_supervision="carry",
    log_every=1,
    global_batch_size=16,
)


def _batches(n, B=16, L=16, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "inputs": jnp.asarray(rng.integers(1, 11, (B, L)), jnp.int32),
            "labels": jnp.asarray(rng.integers(2, 11, (B, L)), jnp.int32),
            "puzzle_identifiers": jnp.asarray(rng.integers(0, 16, (B,)), jnp.int32),
        }
        for _ in range(n)
    ]


def _setup(**train):
    model = TRMModel(ModelConfig(**TINY_MODEL))
    tcfg = TrainConfig(**{**TINY_TRAIN, **train})
    setup = make_setup(model, tcfg, total_steps=100)
    state = jax.jit(functools.partial(init_state, setup, table_rows=16))(jax.random.key(0))
    return setup, state


def test_loss_decreases_on_a_fixed_batch():
    setup, state = _setup(lr=3e-3)
    batch = _batches(1)[0]
    step = jax.jit(functools.partial(train_step, setup))
    losses = []
    for _ in range(12):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_pseudocode_decay_ends_with_the_run_and_stays_down():
    """Deep supervision "pseudocode" takes up to N_sup updates per batch; the schedule must count
    batches like total_steps does, so the cosine reaches its floor at the run's last batch."""
    from trm_jax.steps import train_step_pseudocode

    base, n_batches = 1e-3, 6
    model = TRMModel(ModelConfig(**TINY_MODEL))
    tcfg = TrainConfig(
        **{**TINY_TRAIN, "deep_supervision": "pseudocode", "lr": base, "lr_min_ratio": 0.1}
    )
    setup = make_setup(model, tcfg, total_steps=n_batches)
    state = jax.jit(functools.partial(init_state, setup, table_rows=16))(jax.random.key(0))
    step = jax.jit(functools.partial(train_step_pseudocode, setup))
    lrs = []
    for batch in _batches(n_batches):
        state, m = step(state, batch)
        lrs.append(float(m["lr"]))
    assert int(state.step) > n_batches  # several updates per batch
    warm = TINY_TRAIN["lr_warmup_steps"]
    assert all(a >= b for a, b in zip(lrs[warm - 1 :], lrs[warm:])), lrs  # never climbs back
    np.testing.assert_allclose(lrs[-1], 0.1 * base, rtol=1e-5)
    # The puzzle table's rate follows the same position (past the end it stays at the floor).
    np.testing.assert_allclose(setup.puzzle_lr(n_batches + 5, n_batches), 0.1 * 1e-2, rtol=1e-5)


def test_first_steps_match_a_manual_computation():
    """Loss, gradients and both optimizer updates, rebuilt from the parity-tested pieces."""
    setup, state0 = _setup(ema_rate=0.5)
    model, tcfg = setup.model, setup.tcfg
    batches = _batches(2)
    state = state0
    params = jax.tree.map(np.asarray, state0.params)
    m = jax.tree.map(np.zeros_like, params)
    v = jax.tree.map(np.zeros_like, params)
    table = np.asarray(state0.puzzle_table).copy()
    ema = jax.tree.map(np.copy, params)
    carry = state0.carry
    for t, batch in enumerate(batches, start=1):
        # The jitted train step under test.
        state, metrics = jax.jit(functools.partial(train_step, setup))(state, batch)
        # By hand.
        variables = {"params": params, "constants": state0.constants}
        carry = reset_carry(model, variables, carry, batch)
        ids = np.asarray(carry.current_data["puzzle_identifiers"])
        rows = gather_puzzle_rows(model, jnp.asarray(table), jnp.asarray(ids))
        rng = jax.random.fold_in(jax.random.wrap_key_data(state0.rng), t - 1)

        def f(p, rows):
            nc, out = act_forward(
                model, {"params": p, "constants": state0.constants}, rows, carry, rng, True
            )
            loss, _, _ = step_loss(model, nc, out)
            return loss / tcfg.global_batch_size, nc

        (loss, carry), (g, g_rows) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
            params, rows
        )
        np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-6)
        lr = tcfg.lr * min(t / tcfg.lr_warmup_steps, 1.0)
        emb_lr = tcfg.puzzle_emb_lr * min(t / tcfg.lr_warmup_steps, 1.0)

        def adam(p, g, m_, v_):
            g = np.asarray(g, np.float64)
            m_ = tcfg.beta1 * m_ + (1 - tcfg.beta1) * g
            v_ = tcfg.beta2 * v_ + (1 - tcfg.beta2) * g * g
            upd = np.arctan2(m_ / (1 - tcfg.beta1**t), np.sqrt(v_) / np.sqrt(1 - tcfg.beta2**t))
            return p * (1 - lr * tcfg.weight_decay) - lr * upd, m_, v_

        out = jax.tree.map(adam, params, g, m, v)
        params = jax.tree.map(lambda o: o[0], out, is_leaf=lambda x: isinstance(x, tuple))
        m = jax.tree.map(lambda o: o[1], out, is_leaf=lambda x: isinstance(x, tuple))
        v = jax.tree.map(lambda o: o[2], out, is_leaf=lambda x: isinstance(x, tuple))
        g_sum = {}
        for i, r in zip(ids, np.asarray(g_rows, np.float64)):
            g_sum[int(i)] = g_sum.get(int(i), 0) + r
        for i, gs in g_sum.items():
            table[i] = table[i] * (1 - emb_lr * tcfg.puzzle_emb_weight_decay) - emb_lr * np.sign(gs)
        ema = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, ema, params)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(ema)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.puzzle_table, table, rtol=1e-6, atol=1e-7)
        params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)


SHARDED_SCRIPT = r"""
import functools, jax, numpy as np, sys
sys.path.insert(0, sys.argv[1])
from tests.test_train import _setup, _batches
from trm_jax import sharding as shd
from trm_jax.sharding import state_shardings
from trm_jax.steps import train_step
assert len(jax.devices()) == 8
results = []
for n in (1, 8):
    mesh = shd.make_mesh(n)
    setup, state = _setup()
    sh = state_shardings(jax.eval_shape(lambda: state), mesh)
    state = jax.device_put(state, sh)
    b_sh = shd.batch_sharding(mesh)
    step = jax.jit(functools.partial(train_step, setup), in_shardings=(sh, b_sh),
                   out_shardings=(sh, shd.replicated(mesh)), donate_argnums=0)
    for batch in _batches(4):
        state, m = step(state, jax.device_put(batch, b_sh))
    if n == 8:
        shards = state.puzzle_table.addressable_shards
        assert len({s.device for s in shards}) == 8
        assert all(s.data.shape[0] == 2 for s in shards), [s.data.shape for s in shards]
        assert len(state.carry.z[0].addressable_shards) == 8
    results.append(jax.tree.map(np.asarray, jax.device_get(state)))
a, b = results
for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
print("SHARDED_OK")
"""


def test_sharded_train_step_equals_single_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    res = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT, str(REPO)],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert "SHARDED_OK" in res.stdout, res.stdout + res.stderr[-3000:]


# ---- end to end through the command / driver ------------------------------------------------


@pytest.fixture(scope="module")
def sudoku_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "sd"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "data_gen.sudoku",
            "build",
            "--out",
            str(out),
            "--num-train",
            "64",
            "--num-test",
            "32",
            "--givens",
            "45",
            "--seed",
            "0",
            "--quiet",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    return out


def _override_values(data, **extra) -> dict:
    kw = {
        "data.path": str(data),
        "model.hidden_size": 32,
        "model.puzzle_emb_ndim": 32,
        "model.H_cycles": 2,
        "model.L_cycles": 2,
        "model.halt_max_steps": 3,
        "model.forward_dtype": "float32",
        "data.global_batch_size": 16,
        "data.eval_global_batch_size": 32,
        "train.epochs": 20,
        "train.eval_interval": 10,
        "train.max_steps": 8,
        "train.lr_warmup_steps": 2,
        "checkpoint.every_steps": 4,
        "train.ema": True,
    }
    kw.update(extra)
    return kw


def _overrides(data, **extra):
    return [f"--config.{k}={v}" for k, v in _override_values(data, **extra).items()]


def _drive(workdir, mode, overrides, env=None):
    return subprocess.run(
        [sys.executable, DRIVER, str(workdir), mode, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def _assert_identical(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory, sudoku_data):
    """final.npz of an uninterrupted run per deep-supervision form, made once for the module."""
    finals = {}

    def get(deep_supervision="carry"):
        if deep_supervision not in finals:
            workdir = tmp_path_factory.mktemp(f"straight-{deep_supervision}")
            ov = _overrides(sudoku_data, **{"train.deep_supervision": deep_supervision})
            straight = _drive(workdir, "plain", ov)
            assert straight.returncode == 0, straight.stderr[-3000:]
            finals[deep_supervision] = workdir / "final.npz"
        return finals[deep_supervision]

    return get


@pytest.mark.parametrize("deep_supervision", ["carry", "pseudocode"])
def test_resume_after_sigkill_is_bit_identical(
    tmp_path, sudoku_data, straight_runs, deep_supervision
):
    # Pseudocode ACT takes several optimizer updates per batch: the loop must count batches.
    ov = _overrides(sudoku_data, **{"train.deep_supervision": deep_supervision})
    killed = _drive(tmp_path / "resumed", "kill_after_save=4", ov)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "resumed" / "final.npz").exists()
    resumed = _drive(tmp_path / "resumed", "plain", ov)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_identical(straight_runs(deep_supervision), tmp_path / "resumed" / "final.npz")


def test_kill_during_save_resumes_from_previous_checkpoint(tmp_path, sudoku_data, straight_runs):
    ov = _overrides(sudoku_data)
    killed = _drive(tmp_path / "run", "kill_during_save=8", ov)
    assert killed.returncode == -9, killed.stderr[-3000:]
    names = os.listdir(tmp_path / "run" / "checkpoints")
    assert "8" not in names and "4" in names, names
    resumed = _drive(tmp_path / "run", "plain", ov)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_identical(straight_runs(), tmp_path / "run" / "final.npz")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_one(tmp_path, sudoku_data):
    # 24 steps: the CPU config's time-budgeted decay measures its horizon at step 20, so both
    # processes must agree on it (and on when the budget is over) for their steps to match.
    ov = _overrides(sudoku_data, **{"train.max_steps": 24, "checkpoint.every_steps": 0})
    # The single process gets two (virtual) devices too, so that both runs reduce gradients in
    # the same two-way split; AdamATan2's atan2(m, sqrt(v)) is scale-free, so a different
    # summation order could move parameters with near-zero gradients by up to ~lr.
    env1 = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    single = _drive(tmp_path / "single", "plain", ov, env=env1)
    assert single.returncode == 0, single.stderr[-3000:]
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                DRIVER,
                str(tmp_path / "multi"),
                "plain",
                *ov,
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={i}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    a, b = np.load(tmp_path / "single" / "final.npz"), np.load(tmp_path / "multi" / "final.npz")
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=2e-6, err_msg=k)


def _train_cmd(args):
    return subprocess.run(
        [sys.executable, "-m", "trm_jax.train", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _one_line_error(res):
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return lines[0]


def test_bad_input_gives_one_sentence(tmp_path, sudoku_data):
    base = ["--config=configs/sudoku_cpu.py", f"--workdir={tmp_path / 'w'}"]
    ov = _overrides(sudoku_data, **{"train.max_steps": 2, "checkpoint.every_steps": 0})
    assert "model.nope" in _one_line_error(_train_cmd(base + ov + ["--config.model.nope=1"]))
    assert "mesh.data" in _one_line_error(_train_cmd(base + ov + ["--config.mesh.data=3"]))
    missing = _one_line_error(_train_cmd(base + ov + [f"--config.data.path={tmp_path}/none"]))
    assert "does not exist" in missing
    ok = _train_cmd(base + ov + ["--quiet"])
    assert ok.returncode == 0, ok.stderr
    again = _train_cmd(base + ov + ["--quiet"])
    assert again.returncode == 0 and "Nothing to train" in again.stdout, again.stderr
    err = _one_line_error(_train_cmd(base + ov + ["--config.model.hidden_size=64"]))
    assert "hidden_size" in err and "another model config" in err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, sudoku_data):
    ov = _overrides(
        sudoku_data,
        **{
            "train.lr": 1e30,
            "train.lr_warmup_steps": 1,
            "checkpoint.every_steps": 1,
            "train.log_every": 1,
        },
    )
    res = _train_cmd(["--config=configs/sudoku_cpu.py", f"--workdir={tmp_path / 'w'}", *ov])
    assert res.returncode == 1, res.stderr
    assert "loss became" in res.stderr and "last good" in res.stderr


def test_decay_horizon_fits_the_budget():
    from trm_jax.train import decay_horizon

    # 100 s used of 780, 1 s/step, no evaluation before the horizon: 680 s * 0.98 -> 666 steps.
    assert decay_horizon(100, 100.0, 780.0, 1.0, 30.0, 10_000, 5000) == 100 + 666
    # Two evaluations (at 300 and 600) fall before it: 60 s fewer.
    assert decay_horizon(100, 100.0, 780.0, 1.0, 30.0, 300, 5000) == 100 + int(620 * 0.98)
    # Never past the run's own length, never before now.
    assert decay_horizon(100, 100.0, 780.0, 0.01, 0.0, 10_000, 937) == 937
    assert decay_horizon(100, 900.0, 780.0, 1.0, 0.0, 10_000, 937) == 100


class _FakeClock:
    """Advances one second per reading: a 'step' costs about one reading."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1.0
        return self.t


def test_time_budget_decay_ends_inside_the_budget(tmp_path, sudoku_data):
    from configs import sudoku_cpu
    from trm_jax import train
    from trm_jax.optim import lr_at

    c = sudoku_cpu.get_config()
    c.update_from_flattened_dict(
        _override_values(sudoku_data, **{"train.max_steps": 0, "checkpoint.every_steps": 0})
    )
    c.train.epochs = 40  # 64 puzzles / batch 16 -> 160 steps if the budget allowed
    c.train.eval_interval = 20
    c.train.lr_min_ratio = 0.1
    c.train.lr_decay_end = "time_budget"
    c.train.time_budget_s = 80.0
    result = train.run(c, str(tmp_path / "w"), verbose=False, clock=_FakeClock())
    horizon = int(result.state.horizon)
    # Measured at step 20 (after warm-up and 20 steps) at ~1 fake second per step.
    assert 40 < horizon < 80, horizon
    assert result.step == horizon  # stopped where the decay ends, not at the hard budget
    np.testing.assert_allclose(lr_at(horizon, c.train.lr, 2, horizon, 0.1), 0.1 * c.train.lr)
    assert result.eval_metrics["count"] == 32
    # A resumed run keeps the horizon it finds in the checkpoint.
    again = train.run(c, str(tmp_path / "w"), verbose=False, clock=_FakeClock())
    assert again.step == horizon and int(again.state.horizon) == horizon


def test_curriculum_config_is_read_and_checked():
    from trm_jax import config as config_lib
    from trm_jax import train
    from trm_jax.data import pipeline as pl

    c = config_lib.default_config()
    assert train.curriculum_of(c) is None  # the reference's order by default
    c.data.curriculum, c.data.curriculum_start, c.data.curriculum_batches = "givens", 0.5, 30
    assert train.curriculum_of(c) == pl.Curriculum("givens", 0.5, 30)
    c.data.curriculum = "by-rating"
    with pytest.raises(config_lib.ConfigError, match="data.curriculum key"):
        train.curriculum_of(c)
