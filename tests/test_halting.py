"""Adaptive halting at evaluation follows each architecture's own training halting rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trm_jax.act import act_step, initial_carry
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel, init_variables
from trm_jax.steps import evaluate_batch

BASE = dict(
    vocab_size=11,
    seq_len=16,
    num_puzzle_identifiers=1,
    hidden_size=32,
    num_heads=2,
    puzzle_emb_ndim=0,
    H_cycles=2,
    L_cycles=2,
    L_layers=1,
    halt_max_steps=6,
    forward_dtype="float32",
)


@pytest.mark.parametrize(
    "arch,extra", [("trm", {}), ("hrm", {"H_layers": 1, "no_ACT_continue": False})]
)
def test_adaptive_steps_follow_the_training_rule(arch, extra):
    model = TRMModel(ModelConfig(arch=arch, **BASE, **extra))
    variables = init_variables(model, jax.random.key(0))
    # The reference initialises the Q head to never halt; give it random weights instead so that
    # rows halt at different steps, and q_halt > 0 disagrees with q_halt > q_continue.
    q = variables["params"]["q_head"]
    k1, k2 = jax.random.split(jax.random.key(1))
    q = dict(
        kernel=jax.random.normal(k1, q["kernel"].shape) * 0.3,
        bias=jnp.array([0.2, -0.1]) + 0.0 * q["bias"],
    )
    variables = {**variables, "params": {**variables["params"], "q_head": q}}
    rng = np.random.default_rng(0)
    B = 32
    batch = {
        "inputs": jnp.asarray(rng.integers(1, 11, (B, 16)), jnp.int32),
        "labels": jnp.asarray(rng.integers(2, 11, (B, 16)), jnp.int32),
        "puzzle_identifiers": jnp.zeros((B,), jnp.int32),
    }
    table = jnp.zeros((1, 1), jnp.float32)

    # By hand: run every step and find each row's first step where the rule fires.
    carry = initial_carry(model, batch)
    q_halt, q_cont = [], []
    for _ in range(model.cfg.halt_max_steps):
        carry, out, _, _ = act_step(model, variables, table, carry, batch)
        q_halt.append(np.asarray(out["q_halt_logits"]))
        q_cont.append(np.asarray(out["q_continue_logits"]))
        carry = carry.replace(halted=jnp.zeros_like(carry.halted))
    q_halt, q_cont = np.stack(q_halt), np.stack(q_cont)
    fires = q_halt > 0 if arch == "trm" else q_halt > q_cont
    fires[-1] = True
    expected = fires.argmax(axis=0) + 1
    # The two rules disagree somewhere, so the test tells them apart.
    other = q_halt > q_cont if arch == "trm" else q_halt > 0
    other[-1] = True
    assert np.any(other.argmax(axis=0) + 1 != expected)
    assert len(set(expected.tolist())) > 1

    out, _ = jax.jit(evaluate_batch, static_argnums=0, static_argnames="adaptive")(
        model, variables["params"], variables["constants"], table, batch, adaptive=True
    )
    np.testing.assert_array_equal(np.asarray(out["steps"]), expected)
