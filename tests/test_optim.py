"""Tests for trm_jax.optim: AdamATan2, the LR schedule, sparse sign-SGD and EMA (reference §5)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend.core import jaxprs_in_params

from trm_jax.optim import adam_atan2, ema_update, lr_at, lr_schedule, sparse_sign_sgd

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# lr_schedule


def _np_schedule(step, base, warmup, total, min_ratio):
    if step < warmup:
        return base * step / warmup
    progress = min((step - warmup) / (total - warmup), 1.0)
    return base * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1 + np.cos(np.pi * progress))))


@pytest.mark.parametrize(
    "min_ratio, expected",
    [
        # step:   1      9      10     60       110
        (1.0, [1e-4, 9e-4, 1e-3, 1e-3, 1e-3]),
        (0.1, [1e-4, 9e-4, 1e-3, 0.55e-3, 0.1e-3]),
    ],
)
def test_lr_schedule_warmup_then_cosine(min_ratio, expected):
    schedule = lr_schedule(1e-3, warmup_steps=10, total_steps=110, min_ratio=min_ratio)
    steps = [1, 9, 10, 60, 110]
    got = [float(schedule(s)) for s in steps]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Traced int32 steps under jit give the same values.
    got_jit = jax.jit(jax.vmap(schedule))(jnp.asarray(steps, jnp.int32))
    np.testing.assert_allclose(np.asarray(got_jit), expected, rtol=1e-6)


def test_lr_schedule_matches_formula_everywhere():
    schedule = jax.jit(lr_schedule(3e-4, warmup_steps=7, total_steps=50, min_ratio=0.25))
    for step in range(0, 60):
        want = _np_schedule(step, 3e-4, 7, 50, 0.25)
        np.testing.assert_allclose(float(schedule(step)), want, rtol=1e-5, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# adam_atan2


def _np_adam_atan2(params, grads_per_step, lrs, b1, b2, wd):
    """The reference formula in float64 numpy, one dict of arrays per step."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for k in p:
            g = grads[k].astype(np.float64)
            p[k] = p[k] * (1 - lr * wd)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            p[k] = p[k] - lr * np.arctan2(m[k] / (1 - b1**t), np.sqrt(v[k]) / np.sqrt(1 - b2**t))
    return p


def test_adam_atan2_matches_numpy_reference_with_decay_and_schedule():
    rng = np.random.default_rng(0)
    params = {
        "w": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.normal(size=(4,)).astype(np.float32),
    }
    num_steps = 6
    grads = [
        {
            k: (rng.normal(size=v.shape) * 10.0 ** rng.integers(-3, 2)).astype(np.float32)
            for k, v in params.items()
        }
        for _ in range(num_steps)
    ]
    base, warmup, total, min_ratio, wd = 0.05, 3, 8, 0.1, 0.1
    schedule = lr_schedule(base, warmup, total, min_ratio)
    # The reference's step counter is incremented before use: update t uses lr(t), t = 1, 2, ...
    lrs = [_np_schedule(t, base, warmup, total, min_ratio) for t in range(1, num_steps + 1)]
    want = _np_adam_atan2(params, grads, lrs, 0.9, 0.95, wd)

    opt = adam_atan2(schedule, b1=0.9, b2=0.95, weight_decay=wd)
    p = jax.tree.map(jnp.asarray, params)
    state = opt.init(p)

    @jax.jit
    def step(p, state, g):
        updates, state = opt.update(g, state, p)
        return optax.apply_updates(p, updates), state

    for g in grads:
        p, state = step(p, state, g)
    assert int(state.count) == num_steps
    for k in params:
        assert p[k].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(p[k]), want[k], rtol=2e-6, atol=2e-7)


def test_adam_atan2_schedule_sees_reference_step_numbers():
    seen = []

    def schedule(step):
        seen.append(int(step))
        return 0.01

    opt = adam_atan2(schedule)
    p = {"w": jnp.ones((2,))}
    state = opt.init(p)
    for _ in range(3):
        _, state = opt.update({"w": jnp.ones((2,))}, state, p)
    assert seen == [1, 2, 3]


def test_adam_atan2_zero_gradient_is_decay_only_no_nan():
    # No epsilon: atan2(0, 0) must give 0, leaving only the decoupled decay.
    opt = adam_atan2(0.1, weight_decay=0.5)
    p = {"w": jnp.array([2.0, -4.0])}
    updates, _ = opt.update({"w": jnp.zeros((2,))}, opt.init(p), p)
    np.testing.assert_allclose(np.asarray(optax.apply_updates(p, updates)["w"]), [1.9, -3.8])


def test_adam_atan2_state_is_float32_arrays_and_needs_params():
    opt = adam_atan2(1e-3)
    p = {"w": jnp.ones((2, 2), jnp.bfloat16), "b": jnp.zeros((2,), jnp.float32)}
    state = opt.init(p)
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((state.mu, state.nu)))
    assert state.count.dtype == jnp.int32
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, p), state, p)
    assert updates["w"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="needs the current parameters"):
        opt.update(p, state)


# --------------------------------------------------------------------------------------------------
# sparse_sign_sgd


def _np_sparse_sign_sgd(table, ids, row_grads, lr, wd):
    table = table.astype(np.float32).copy()
    sums = {}
    for i, g in zip(ids.tolist(), row_grads):
        sums[i] = sums.get(i, 0.0) + g.astype(np.float64)
    for i, g in sums.items():
        table[i] = table[i] * np.float32(1 - np.float32(lr) * np.float32(wd)) - np.float32(
            lr
        ) * np.sign(g).astype(np.float32)
    return table


def test_sparse_sign_sgd_sums_duplicates_and_leaves_other_rows_alone():
    rng = np.random.default_rng(1)
    n, d = 12, 3
    table = rng.normal(size=(n, d)).astype(np.float32)
    g = np.array([0.5, -2.0, 1e-3], np.float32)
    ids = np.array([2, 5, 2, 7, 4, 4], np.int32)
    row_grads = np.stack(
        [
            g,  # id 2 ...
            np.array([1.0, -1.0, 0.0], np.float32),  # id 5: sign (+, -, 0)
            -g,  # ... cancels on id 2: decay only
            np.array([-3.0, 3.0, -3.0], np.float32),  # id 7
            np.array([3.0, -1.0, 1.0], np.float32),  # id 4: sum (+2, +1, -1), not each row's sign
            np.array([-1.0, 2.0, -2.0], np.float32),
        ]
    )
    lr, wd = 0.01, 0.1
    out = np.asarray(sparse_sign_sgd(jnp.asarray(table), jnp.asarray(ids), row_grads, lr, wd))

    decay = np.float32(1 - np.float32(lr) * np.float32(wd))
    np.testing.assert_array_equal(out[2], table[2] * decay)
    np.testing.assert_allclose(out[5], table[5] * decay - lr * np.array([1, -1, 0]), rtol=1e-6)
    np.testing.assert_allclose(out[4], table[4] * decay - lr * np.array([1, 1, -1]), rtol=1e-6)
    np.testing.assert_allclose(out[7], table[7] * decay - lr * np.array([-1, 1, -1]), rtol=1e-6)
    untouched = np.setdiff1d(np.arange(n), ids)
    assert out[untouched].tobytes() == table[untouched].tobytes()
    np.testing.assert_allclose(out, _np_sparse_sign_sgd(table, ids, row_grads, lr, wd), rtol=1e-6)


def test_sparse_sign_sgd_jit_with_donated_table():
    rng = np.random.default_rng(2)
    table_np = rng.normal(size=(20, 4)).astype(np.float32)
    ids = jnp.asarray([19, 0, 3, 3], jnp.int32)
    row_grads = jnp.asarray(rng.normal(size=(4, 4)).astype(np.float32))
    want = jax.jit(sparse_sign_sgd)(jnp.asarray(table_np), ids, row_grads, 0.1, 1.0)

    step = jax.jit(sparse_sign_sgd, donate_argnums=0)
    table = jnp.asarray(table_np)
    lr = jnp.float32(0.1)  # traced scalar lr, as the schedule gives
    out = step(table, ids, row_grads, lr, 1.0)
    assert table.is_deleted()
    assert np.asarray(out).tobytes() == np.asarray(want).tobytes()
    # Can be applied repeatedly to its own output (the training loop's pattern).
    out2 = step(out, ids, row_grads, lr, 1.0)
    np.testing.assert_allclose(
        np.asarray(out2),
        _np_sparse_sign_sgd(np.asarray(want), np.asarray(ids), np.asarray(row_grads), 0.1, 1.0),
        rtol=1e-6,
    )


def _shapes_in_jaxpr(jaxpr):
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield eqn.primitive.name, tuple(var.aval.shape)
        for sub in jaxprs_in_params(eqn.params):
            yield from _shapes_in_jaxpr(sub)


def test_sparse_sign_sgd_builds_no_dense_table_sized_intermediate():
    n, d, b = 97, 5, 8
    closed = jax.make_jaxpr(sparse_sign_sgd)(
        jnp.zeros((n, d)), jnp.zeros((b,), jnp.int32), jnp.zeros((b, d)), 0.1, 0.1
    )
    table_sized = [name for name, shape in _shapes_in_jaxpr(closed.jaxpr) if shape == (n, d)]
    # The only [N, D] value is the result of the final scatter into the table.
    assert table_sized == ["scatter"]


_SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from trm_jax.optim import sparse_sign_sgd

    n, d, b = 96, 5, 16
    rng = np.random.default_rng(3)
    table = rng.normal(size=(n, d)).astype(np.float32)
    ids = rng.integers(0, n, size=b).astype(np.int32)
    ids[:4] = [0, 0, 95, 95]  # duplicates, first and last rows (first and last shard)
    grads = rng.normal(size=(b, d)).astype(np.float32)
    want = np.asarray(jax.jit(sparse_sign_sgd)(jnp.asarray(table), ids, grads, 0.01, 0.1))
    result = {"devices": jax.device_count()}
    for axis_type in (AxisType.Auto, AxisType.Explicit):
        mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
        rows = NamedSharding(mesh, P("data", None))
        batch = NamedSharding(mesh, P("data"))
        rep = NamedSharding(mesh, P())
        step = jax.jit(
            sparse_sign_sgd,
            in_shardings=(rows, batch, rows, rep, rep),
            out_shardings=rows,
            donate_argnums=0,
        )
        args = (
            jax.device_put(table, rows),
            jax.device_put(ids, batch),
            jax.device_put(grads, rows),
            jnp.float32(0.01),
            jnp.float32(0.1),
        )
        hlo = step.lower(*args).compile().as_text()
        out = step(*args)
        result[str(axis_type)] = {
            "equal": bool(np.asarray(out).tobytes() == want.tobytes()),
            "sharding": list(out.sharding.spec),
            # Per-device program: a full [N, D] buffer would mean the table was gathered.
            "full_table_in_hlo": "f32[96,5]" in hlo,
        }
    print(json.dumps(result))
    """
)


def test_sparse_sign_sgd_row_sharded_equals_unsharded():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8
    for axis_type in ("AxisType.Auto", "AxisType.Explicit"):
        assert result[axis_type] == {
            "equal": True,
            "sharding": ["data", None],
            "full_table_in_hlo": False,
        }, (axis_type, result)


# --------------------------------------------------------------------------------------------------
# ema_update


def test_ema_update_matches_reference_formula():
    ema = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(-3.0)}}
    params = {"a": jnp.array([2.0, 0.0]), "b": {"c": jnp.array(5.0)}}
    out = jax.jit(ema_update)(ema, params)
    np.testing.assert_allclose(np.asarray(out["a"]), [1.001, 1.998], rtol=1e-6)
    np.testing.assert_allclose(float(out["b"]["c"]), -3.0 * 0.999 + 5.0 * 0.001, rtol=1e-6)
    assert out["a"].dtype == jnp.float32
    out = ema_update(ema, params, rate=0.5)
    np.testing.assert_allclose(np.asarray(out["a"]), [1.5, 1.0])


def test_lr_at_takes_a_traced_horizon():
    # The train state carries the decay horizon: one compiled step must serve every horizon.
    fn = jax.jit(lambda step, horizon: lr_at(step, 2e-3, 10, horizon, 0.1))
    for horizon in (11, 50, 400):
        schedule = lr_schedule(2e-3, warmup_steps=10, total_steps=horizon, min_ratio=0.1)
        for step in (1, 9, 10, 11, horizon // 2 + 5, horizon):
            np.testing.assert_allclose(fn(step, horizon), schedule(step), rtol=1e-6)
        np.testing.assert_allclose(fn(horizon, horizon), 2e-4, rtol=1e-5)
