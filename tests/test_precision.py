"""bf16 paths (issue 15): which dtype rounds, stores and multiplies, what XLA:CPU compiles them
to, and that every path computes what a bfloat16 model should."""

import collections
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trm_jax import hardware
from trm_jax.act import act_forward, act_step, initial_carry, reset_carry, step_loss
from trm_jax.model import layers
from trm_jax.model.config import ModelConfig, resolve_forward_dtype
from trm_jax.model.trm import TRMModel, init_variables, matmul_path

TINY = dict(
    vocab_size=11,
    seq_len=16,
    num_puzzle_identifiers=3,
    hidden_size=32,
    num_heads=2,
    puzzle_emb_ndim=32,
    puzzle_emb_len=2,
    H_cycles=2,
    L_cycles=2,
    L_layers=1,
    halt_max_steps=4,
    halt_exploration_prob=0.0,
)


@pytest.fixture
def units(monkeypatch):
    """Set the CPU's bf16 units the model sees (the paths do not depend on the real CPU)."""

    def set_units(value):
        monkeypatch.setattr(hardware, "bf16_units", lambda flags=None: value)

    return set_units


# ---- resolution -----------------------------------------------------------------------------


def test_precision_per_backend_and_cpu():
    bf = jnp.bfloat16
    none = layers.precision(bf, backend="cpu", units="none")
    assert (none.storage, none.operand, none.nn_grads) == (jnp.float32, jnp.float32, False)
    assert none.path == "bf16 upcast to f32"
    for unit in ("avx512_bf16", "amx_bf16"):
        fast = layers.precision(bf, backend="cpu", units=unit)
        assert (fast.storage, fast.operand, fast.nn_grads) == (jnp.float32, bf, True)
        assert fast.path == "bf16->f32"
    gpu = layers.precision(bf, backend="gpu")
    assert (gpu.storage, gpu.operand, gpu.nn_grads) == (bf, bf, False)
    assert layers.precision(bf, "float32", backend="gpu").storage == jnp.float32
    assert layers.precision(bf, "bfloat16", backend="cpu", units="none").storage == bf
    f32 = layers.precision(jnp.float32, backend="cpu", units="amx_bf16")
    assert (f32.storage, f32.operand, f32.path) == (jnp.float32, jnp.float32, "f32")


def test_auto_forward_dtype_resolves_once_with_a_reason(units):
    assert resolve_forward_dtype("auto", backend="gpu")[0] == "bfloat16"
    assert resolve_forward_dtype("auto", backend="tpu")[0] == "bfloat16"
    dtype, why = resolve_forward_dtype("auto", backend="cpu", units="amx_bf16")
    assert (dtype, why) == ("bfloat16", "auto: CPU has amx_bf16")
    assert resolve_forward_dtype("auto", backend="cpu", units="none")[0] == "float32"
    dtype, why = resolve_forward_dtype("auto", backend="cpu", units="avx512_bf16")
    assert dtype == "bfloat16" and "avx512_bf16" in why
    assert resolve_forward_dtype("float32") == ("float32", "set in the config")
    units("amx_bf16")
    cfg = ModelConfig(**TINY, forward_dtype="auto")
    assert cfg.forward_dtype == "bfloat16" and matmul_path(cfg) == "bf16->f32"
    units("none")
    cfg = ModelConfig(**TINY, forward_dtype="auto")
    assert cfg.forward_dtype == "float32" and matmul_path(cfg) == "f32"
    with pytest.raises(ValueError, match="activation_storage"):
        ModelConfig(**TINY, activation_storage="half")


def test_bf16_units_from_flags():
    assert hardware.bf16_units(frozenset({"avx512f", "amx_bf16", "avx512_bf16"})) == "amx_bf16"
    assert hardware.bf16_units(frozenset({"avx512f", "avx512_bf16"})) == "avx512_bf16"
    assert hardware.bf16_units(frozenset({"avx512f", "avx2"})) == "none"
    assert hardware.bf16_units() in hardware.BF16_UNITS


# ---- the NN-form products -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 12), (7, 5), (6, 9), (2, 3, 16, 6), (3, 7, 11)])
def test_materialized_transpose_is_a_transpose(shape):
    x = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
    got = jax.jit(layers.materialized_transpose)(x)
    np.testing.assert_array_equal(got, jnp.swapaxes(x, -1, -2))


def _bf16(key, shape):
    return jax.random.normal(key, shape, jnp.float32).astype(jnp.bfloat16)


@pytest.mark.parametrize(
    "fn,shapes",
    [
        (layers.nn_matmul, ((24, 16), (16, 40))),
        (layers.nn_matmul, ((24, 40), (40, 16))),
        (layers.nn_matmul_left, ((16, 40), (16, 24))),
        (layers.batched_nn_matmul, ((2, 3, 9, 8), (2, 3, 8, 9))),
    ],
)
def test_nn_form_gradients_equal_autodiff(fn, shapes):
    """The custom VJPs give autodiff's gradients of the same bf16 product (to bf16 rounding)."""
    k = jax.random.split(jax.random.key(0), 3)
    a, b = _bf16(k[0], shapes[0]), _bf16(k[1], shapes[1])
    out_shape = jax.eval_shape(fn, a, b).shape
    w = jax.random.normal(k[2], out_shape, jnp.float32)

    def reference(a, b):
        a32, b32 = a.astype(jnp.float32), b.astype(jnp.float32)
        if fn is layers.nn_matmul_left:
            return a32.T @ b32
        return a32 @ b32

    def loss(f):
        return lambda a, b: jnp.sum(f(a, b).astype(jnp.bfloat16).astype(jnp.float32) * w)

    np.testing.assert_allclose(jax.jit(fn)(a, b), reference(a, b), rtol=1e-5, atol=1e-5)
    got = jax.jit(jax.grad(loss(fn), argnums=(0, 1)))(a, b)
    want = jax.grad(loss(reference), argnums=(0, 1))(a, b)
    for g, r in zip(got, want):
        assert g.dtype == jnp.bfloat16
        g, r = np.asarray(g, np.float32), np.asarray(r, np.float32)
        np.testing.assert_allclose(g, r, rtol=2e-2, atol=2e-2 * np.abs(r).max())


# ---- the model on every path ----------------------------------------------------------------


def _setup(cfg, B=4):
    model = TRMModel(cfg)
    variables = init_variables(model, jax.random.key(0))
    # q_head starts at zero: give it weights so its products and gradients are exercised.
    q = variables["params"]["q_head"]
    q["kernel"] = 0.1 * jax.random.normal(jax.random.key(3), q["kernel"].shape)
    rng = np.random.default_rng(0)
    batch = {
        "inputs": jnp.asarray(rng.integers(1, cfg.vocab_size, (B, cfg.seq_len)), jnp.int32),
        "labels": jnp.asarray(rng.integers(1, cfg.vocab_size, (B, cfg.seq_len)), jnp.int32),
        "puzzle_identifiers": jnp.asarray(rng.integers(0, 3, (B,)), jnp.int32),
    }
    table = 0.1 * jax.random.normal(jax.random.key(1), (3, cfg.puzzle_emb_ndim))
    return model, variables, table, batch


def _train_grad_fn(model):
    def step(variables, table, carry, batch, rng):
        carry = reset_carry(model, variables, carry, batch)
        rows = table[carry.current_data["puzzle_identifiers"]]

        def f(params, rows):
            v = {"params": params, "constants": variables["constants"]}
            nc, out = act_forward(model, v, rows, carry, rng, True)
            return step_loss(model, nc, out)[0]

        return jax.value_and_grad(f, argnums=(0, 1))(variables["params"], rows)

    return jax.jit(step)


def _loss_and_grads(cfg):
    model, variables, table, batch = _setup(cfg)
    carry = initial_carry(model, batch)
    return _train_grad_fn(model)(variables, table, carry, batch, jax.random.key(2))


def _forward(cfg, steps=1):
    model, variables, table, batch = _setup(cfg)
    carry = initial_carry(model, batch)
    for _ in range(steps):
        carry, out, loss, _ = act_step(model, variables, table, carry, batch)
    return out, loss


@pytest.mark.parametrize("mlp_t", [True, False])
def test_bf16_paths_agree_with_float32_and_each_other(units, mlp_t):
    """bf16 forward and gradients on the native path (bf16 operands, float32 storage) and the
    upcast path agree with float32 within bf16 tolerance, and with each other more closely."""
    cfg32 = ModelConfig(**TINY, mlp_t=mlp_t, forward_dtype="float32")
    cfg16 = dataclasses.replace(cfg32, forward_dtype="bfloat16")
    units("avx512_bf16")
    fwd32, (loss32, grads32) = _forward(cfg32), _loss_and_grads(cfg32)
    fwd_native, (loss_native, grads_native) = _forward(cfg16), _loss_and_grads(cfg16)
    units("none")
    fwd_up, (loss_up, grads_up) = _forward(cfg16), _loss_and_grads(cfg16)
    for o, loss in (fwd_native, fwd_up):
        assert o["logits"].dtype == jnp.bfloat16
        for k in ("logits", "q_halt_logits"):
            a = np.asarray(fwd32[0][k], np.float32)
            b = np.asarray(o[k], np.float32)
            assert np.all(np.isfinite(b))
            # One ACT step (42 rounded layers' worth of recursion here): ~1.5% measured.
            assert np.max(np.abs(a - b)) <= 0.04 * np.max(np.abs(a)), k
        assert abs(float(loss) - float(fwd32[1])) <= 0.03 * abs(float(fwd32[1]))
    a, b = (
        np.asarray(fwd_native[0]["logits"], np.float32),
        np.asarray(fwd_up[0]["logits"], np.float32),
    )
    assert np.max(np.abs(a - b)) <= 0.03 * np.max(np.abs(a))
    leaves32 = jax.tree.leaves(grads32)
    for grads in (grads_native, grads_up):
        for g32, g16 in zip(leaves32, jax.tree.leaves(grads)):
            g32, g16 = np.asarray(g32, np.float32), np.asarray(g16, np.float32)
            assert np.all(np.isfinite(g16))
            scale = np.max(np.abs(g32)) + 1e-12
            # Gradients through a bf16 recursion: a few percent of the largest entry.
            assert np.max(np.abs(g32 - g16)) <= 0.1 * scale, (g32.shape, scale)
    assert abs(float(loss_native) - float(loss32)) <= 0.03 * abs(float(loss32))
    assert abs(float(loss_up) - float(loss32)) <= 0.03 * abs(float(loss32))


# ---- the optimised HLO ----------------------------------------------------------------------


def hlo_dots(text: str) -> list[tuple[str, str, str, str]]:
    """(lhs dtype, rhs dtype, result dtype, op name) of every dot in optimised HLO text."""
    found = []
    for block in re.split(r"\n(?=\S)", text):
        types = dict(re.findall(r"^\s*(?:ROOT )?(%[\w.\-]+) = (\w+)\[", block, flags=re.M))
        pattern = r"= (\w+)\[[^\n]*? dot\((%[\w.\-]+), (%[\w.\-]+)\)[^\n]*"
        for m in re.finditer(pattern, block):
            name = re.search(r'op_name="([^"]*)"', m.group(0))
            found.append((types[m.group(2)], types[m.group(3)], m.group(1), name.group(1)))
    return found


_ARITHMETIC = r"add|subtract|multiply|divide|exponential|rsqrt|negate|maximum|tanh|logistic|reduce"


def _compiled_train_hlo(cfg):
    model, variables, table, batch = _setup(cfg)
    carry = initial_carry(model, batch)
    fn = _train_grad_fn(model)
    return fn.lower(variables, table, carry, batch, jax.random.key(2)).compile().as_text()


def test_hlo_every_dense_dot_is_bf16_to_f32_and_no_bf16_elementwise(units):
    """Token-MLP model, bf16 on the native CPU path: all 30 dots of the train step's dense
    layers (forward, input gradients, weight gradients; lm_head, q_head) are bf16 x bf16 -> f32
    but one tiny q_head gradient (B x 2 x D, left to XLA), and no arithmetic runs in bf16."""
    units("avx512_bf16")
    text = _compiled_train_hlo(ModelConfig(**TINY, mlp_t=True, forward_dtype="bfloat16"))
    dots = hlo_dots(text)
    kinds = collections.Counter((a, b, out) for a, b, out, _ in dots)
    assert kinds[("bf16", "bf16", "f32")] >= 29, kinds
    others = [d for d in dots if d[:3] != ("bf16", "bf16", "f32")]
    assert all("q_head" in d[3] for d in others), others
    for part in ("gate_up_proj", "down_proj", "lm_head"):
        grads = [d for d in dots if part in d[3] and "transpose(" in d[3]]
        assert grads and all(d[:3] == ("bf16", "bf16", "f32") for d in grads), part
    bf16_math = re.findall(rf"= bf16\[[^\]]*\](?:\{{[^}}]*\}})? ({_ARITHMETIC})\(", text)
    assert bf16_math == []
    # The reference's rounding points are kept: f32 -> bf16 converts are there.
    assert re.search(r"= bf16\[[^\]]*\](?:\{[^}]*\})? convert\(", text)


def test_hlo_attention_dense_dots_are_bf16(units):
    units("avx512_bf16")
    text = _compiled_train_hlo(ModelConfig(**TINY, forward_dtype="bfloat16"))
    dots = hlo_dots(text)
    for part in ("qkv_proj", "o_proj", "mlp/gate_up_proj", "mlp/down_proj", "lm_head"):
        mine = [d for d in dots if part in d[3]]
        assert mine and all(d[:3] == ("bf16", "bf16", "f32") for d in mine), (part, mine)


def test_hlo_upcast_path_has_only_f32_dots(units):
    units("none")
    text = _compiled_train_hlo(ModelConfig(**TINY, mlp_t=True, forward_dtype="bfloat16"))
    assert {d[:3] for d in hlo_dots(text)} == {("f32", "f32", "f32")}
