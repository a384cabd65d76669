"""Model facts users rely on: parameter counts, gradient span, compile size, dtypes."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trm_jax import checkpoint
from trm_jax.act import act_forward, act_step, initial_carry, reset_carry, step_loss
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel, init_variables, inner_forward

TINY = dict(
    vocab_size=11,
    seq_len=16,
    num_puzzle_identifiers=3,
    hidden_size=32,
    num_heads=2,
    puzzle_emb_ndim=32,
    puzzle_emb_len=2,
    H_cycles=3,
    L_cycles=2,
    L_layers=2,
    halt_max_steps=4,
    forward_dtype="float32",
    halt_exploration_prob=0.0,
)


def _count(cfg):
    shapes = jax.eval_shape(lambda: init_variables(TRMModel(cfg), jax.random.key(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize(
    "kw,expected",
    [
        (dict(vocab_size=11, seq_len=81, mlp_t=True, pos_encodings="none"), 5_028_866),
        (dict(vocab_size=11, seq_len=81), 6_828_034),
        (dict(vocab_size=6, seq_len=900, L_cycles=4), 6_822_914),
        (dict(vocab_size=12, seq_len=900, L_cycles=4), 6_829_058),
        (
            dict(
                vocab_size=11,
                seq_len=81,
                arch="hrm",
                H_layers=4,
                L_layers=4,
                H_cycles=2,
                L_cycles=2,
            ),
            27_275_266,
        ),
        (
            dict(
                vocab_size=12, seq_len=900, arch="transformer", H_layers=8, num_heads=12, H_cycles=1
            ),
            27_145_218,
        ),
    ],
    ids=["sudoku-mlp", "sudoku-att", "maze-att", "arc-att", "hrm-sudoku", "baseline-arc"],
)
def test_parameter_counts_match_reference(kw, expected):
    assert _count(ModelConfig(**kw)) == expected


def _setup(**overrides):
    cfg = ModelConfig(**{**TINY, **overrides})
    model = TRMModel(cfg)
    variables = init_variables(model, jax.random.key(0))
    table = 0.02 * jax.random.normal(jax.random.key(1), (3, cfg.puzzle_emb_ndim))
    rng = np.random.default_rng(0)
    batch = {
        "inputs": jnp.asarray(rng.integers(1, 11, (4, cfg.seq_len)), jnp.int32),
        "labels": jnp.asarray(rng.integers(2, 11, (4, cfg.seq_len)), jnp.int32),
        "puzzle_identifiers": jnp.asarray([0, 1, 2, 1], jnp.int32),
    }
    # Give q_head and the latents something to do.
    variables = jax.tree.map(lambda x: x, variables)
    return cfg, model, variables, table, batch


def _assert_grads_close(a_tree, b_tree):
    for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree)):
        scale = float(np.max(np.abs(b)))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)


def _grads_wrt(model, variables, z, x):
    def f(params, z):
        v = {"params": params, "constants": variables["constants"]}
        out = inner_forward(model, v, z, x)
        return sum(jnp.sum(jnp.sin(t)) for t in out)

    return jax.grad(f, argnums=(0, 1))(variables["params"], z)


@pytest.mark.parametrize("arch", ["trm", "trm_singlez", "trm_hier6", "hrm"])
def test_gradient_only_through_final_cycle(arch):
    cfg, model, variables, table, batch = _setup(arch=arch, H_layers=1)
    rows = table[batch["puzzle_identifiers"]]
    x = model.apply(variables, batch["inputs"], rows, method=TRMModel.embed)
    z0 = tuple(
        t + 0.1 * jax.random.normal(jax.random.key(i), t.shape)
        for i, t in enumerate(model.apply(variables, 4, method=TRMModel.initial_latents))
    )
    g_params, g_z = _grads_wrt(model, variables, z0, x)
    # Nothing flows into the incoming carry.
    for g in g_z:
        assert float(jnp.max(jnp.abs(g))) == 0.0
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_params)) > 0

    if arch == "hrm":
        return
    # The same gradient as a single graded cycle started from the warmed-up latents: if the
    # warm-up leaked gradient (or the graded cycle were stopped) the two would differ.
    one = dataclasses.replace(cfg, H_cycles=1)
    warm_cfg = dataclasses.replace(cfg, H_cycles=cfg.H_cycles - 1)
    z_warm = inner_forward(TRMModel(warm_cfg), variables, z0, x)
    g_ref, _ = _grads_wrt(TRMModel(one), variables, z_warm, x)
    _assert_grads_close(g_params, g_ref)


# Every mode on TRM; HRM once ("full"): the same wrapper around its L and H nets.
@pytest.mark.parametrize(
    ("arch", "remat"), [("trm", "block"), ("trm", "full"), ("trm", "dots"), ("hrm", "full")]
)
def test_remat_keeps_outputs_and_gradients(arch, remat):
    """Rematerialisation trades memory for recomputation; it must not change the numbers."""
    cfg, model, variables, table, batch = _setup(arch=arch, H_layers=1, mlp_t=arch == "trm")
    rows = table[batch["puzzle_identifiers"]]
    x = model.apply(variables, batch["inputs"], rows, method=TRMModel.embed)
    z0 = model.apply(variables, 4, method=TRMModel.initial_latents)
    other = TRMModel(dataclasses.replace(cfg, remat=remat))
    for a, b in zip(inner_forward(other, variables, z0, x), inner_forward(model, variables, z0, x)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    _assert_grads_close(_grads_wrt(other, variables, z0, x), _grads_wrt(model, variables, z0, x))


def test_hrm_one_step_gradient():
    """HRM differentiates only the final L and H updates."""
    cfg, model, variables, table, batch = _setup(arch="hrm", H_layers=1, H_cycles=2, L_cycles=3)
    rows = table[batch["puzzle_identifiers"]]
    x = model.apply(variables, batch["inputs"], rows, method=TRMModel.embed)
    z0 = model.apply(variables, 4, method=TRMModel.initial_latents)

    def f(params):
        v = {"params": params, "constants": variables["constants"]}
        return jnp.sum(jnp.sin(inner_forward(model, v, z0, x)[0]))

    g = jax.grad(f)(variables["params"])

    # Manual: everything but the last L and H update without gradient.
    def manual(params):
        v = {"params": params, "constants": variables["constants"]}
        sg = jax.lax.stop_gradient
        vs = sg(v)
        rope = None if cfg.pos_encodings != "rope" else model.apply(v, method=TRMModel.rope)
        zH, zL = z0
        for h in range(cfg.H_cycles):
            for l in range(cfg.L_cycles):
                if h == cfg.H_cycles - 1 and l == cfg.L_cycles - 1:
                    break
                zL = model.apply(vs, zL, zH + x, rope, method=TRMModel.L_net)
            if h < cfg.H_cycles - 1:
                zH = model.apply(vs, zH, zL, rope, method=TRMModel.H_net)
        zL = model.apply(v, zL, zH + x, rope, method=TRMModel.L_net)
        zH = model.apply(v, zH, zL, rope, method=TRMModel.H_net)
        return jnp.sum(jnp.sin(zH))

    g_manual = jax.grad(manual)(variables["params"])
    _assert_grads_close(g, g_manual)


def _train_step_hlo_size(cfg):
    model = TRMModel(cfg)
    variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    B = 2
    batch = {
        "inputs": jax.ShapeDtypeStruct((B, cfg.seq_len), jnp.int32),
        "labels": jax.ShapeDtypeStruct((B, cfg.seq_len), jnp.int32),
        "puzzle_identifiers": jax.ShapeDtypeStruct((B,), jnp.int32),
    }
    table = jax.ShapeDtypeStruct((3, cfg.puzzle_emb_ndim), jnp.float32)

    def step(variables, table, carry, batch, rng):
        carry = reset_carry(model, variables, carry, batch)
        rows = table[carry.current_data["puzzle_identifiers"]]

        def f(params, rows):
            v = {"params": params, "constants": variables["constants"]}
            nc, out = act_forward(model, v, rows, carry, rng, True)
            return step_loss(model, nc, out)[0]

        return jax.grad(f, argnums=(0, 1))(variables["params"], rows)

    carry = jax.eval_shape(lambda b: initial_carry(model, b), batch)
    text = jax.jit(step).lower(variables, table, carry, batch, jax.random.key(0)).as_text()
    return len(re.findall(r"^\s*%?\S+ = ", text, flags=re.M)) or len(text.splitlines())


def test_lowered_size_does_not_grow_with_cycles():
    small = _train_step_hlo_size(ModelConfig(**{**TINY, "H_cycles": 1, "L_cycles": 1}))
    big = _train_step_hlo_size(ModelConfig(**{**TINY, "H_cycles": 3, "L_cycles": 6}))
    # (3, 6) applies the net 21 times against 2; a Python-unrolled recursion would be ~10x.
    assert big <= 1.5 * small, (small, big)


def test_bfloat16_agrees_with_float32_and_is_finite():
    cfg32, model32, variables, table, batch = _setup()
    model16 = TRMModel(dataclasses.replace(cfg32, forward_dtype="bfloat16"))
    outs = []
    for model in (model32, model16):
        carry = initial_carry(model, batch)
        for _ in range(2):
            carry, out, loss, _ = act_step(model, variables, table, carry, batch)
        outs.append((out, loss))
    (o32, l32), (o16, l16) = outs
    assert o16["logits"].dtype == jnp.bfloat16
    for k in ("logits", "q_halt_logits"):
        a = np.asarray(o32[k], np.float32)
        b = np.asarray(o16[k], np.float32)
        assert np.all(np.isfinite(b))
        scale = np.max(np.abs(a))
        assert np.max(np.abs(a - b)) <= 0.08 * scale, (k, np.max(np.abs(a - b)), scale)
    assert abs(float(l32) - float(l16)) <= 0.03 * abs(float(l32))


def test_eval_runs_all_steps_and_training_halts_on_q():
    cfg, model, variables, table, batch = _setup()
    carry = initial_carry(model, batch)
    for k in range(cfg.halt_max_steps):
        carry, out, _, _ = act_step(model, variables, table, carry, batch, training=False)
        assert bool(jnp.all(carry.halted)) == (k == cfg.halt_max_steps - 1)
    # q_head bias large and positive: every row halts after one training step.
    v = jax.tree.map(lambda x: x, variables)
    v["params"]["q_head"]["bias"] = jnp.array([10.0, 0.0])
    carry = initial_carry(model, batch)
    carry, *_ = act_step(model, v, table, carry, batch, jax.random.key(0), training=True)
    assert bool(jnp.all(carry.halted)) and int(carry.steps[0]) == 1


def test_exploration_draws_per_row():
    cfg, model, variables, table, batch = _setup(halt_exploration_prob=1.0, halt_max_steps=16)
    variables["params"]["q_head"]["bias"] = jnp.array([10.0, 0.0])  # would halt at once
    batch = jax.tree.map(lambda x: jnp.concatenate([x] * 16), batch)
    carry = initial_carry(model, batch)
    step = jax.jit(lambda c, key: act_step(model, variables, table, c, batch, key, True)[0])
    halted_at = np.zeros(64, int)
    for k in range(16):
        carry = step(carry, jax.random.key(k))
        newly = np.asarray(carry.halted) & (halted_at == 0)
        halted_at[newly] = k + 1
    # Every row explored: a minimum of 2..16 steps, drawn independently per row.
    assert halted_at.min() >= 2 and len(set(halted_at.tolist())) > 5


def test_q_continue_target_path_works_for_trm():
    cfg, model, variables, table, batch = _setup(no_ACT_continue=False)
    # At init q_halt = q_continue = -5 makes the target equal sigmoid(q_continue): zero gradient.
    kernel = variables["params"]["q_head"]["kernel"]
    variables["params"]["q_head"]["kernel"] = 0.2 * jax.random.normal(
        jax.random.key(3), kernel.shape
    )
    carry = initial_carry(model, batch)
    carry = reset_carry(model, variables, carry, batch)
    rows = table[carry.current_data["puzzle_identifiers"]]

    def f(params):
        v = {"params": params, "constants": variables["constants"]}
        nc, out = act_forward(model, v, rows, carry, jax.random.key(0), True)
        loss, metrics, _ = step_loss(model, nc, out)
        return loss, (out, metrics)

    (loss, (out, metrics)), g = jax.value_and_grad(f, has_aux=True)(variables["params"])
    assert "target_q_continue" in out and "q_continue_loss" in metrics
    t = np.asarray(out["target_q_continue"])
    assert np.all((t > 0) & (t < 1))
    # The continue row of q_head now gets gradient (it gets none with no_ACT_continue=True).
    assert float(jnp.abs(g["q_head"]["bias"][1])) > 0
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))


@pytest.mark.parametrize("arch", ["trm_singlez", "trm_hier6", "hrm", "transformer"])
def test_variants_train_step_finite(arch):
    cfg, model, variables, table, batch = _setup(arch=arch, H_layers=2, L_cycles=2)
    carry = initial_carry(model, batch)
    carry, out, loss, metrics = act_step(
        model, variables, table, carry, batch, jax.random.key(0), True
    )
    assert np.isfinite(float(loss)) and out["logits"].shape == (4, cfg.seq_len, cfg.vocab_size)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(vocab_size=3, seq_len=4, arch="nope")
    with pytest.raises(ValueError, match="L_cycles"):
        ModelConfig(vocab_size=3, seq_len=4, arch="trm_hier6", L_cycles=7)
    with pytest.raises(ValueError, match="pos_encodings"):
        ModelConfig(vocab_size=3, seq_len=4, arch="transformer", H_layers=2, pos_encodings="none")


def test_hier6_latent_mean_option_reads_the_mean_of_the_latents():
    """trm_hier6 with model.latent_sum = "mean", written out: L step l sets
    z_Ll = net(S, z_H + x), the H step z_H = net(z_H, S), S the mean of the latents (the
    reference's sum, the default, is covered by the golden files of tests/test_parity.py)."""
    latent_sum = "mean"
    cfg, model, variables, table, batch = _setup(
        arch="trm_hier6", H_cycles=2, L_cycles=3, num_latents=4, latent_sum=latent_sum
    )
    rows = table[batch["puzzle_identifiers"]]
    x = model.apply(variables, batch["inputs"], rows, method=TRMModel.embed)
    z = [
        t + 0.1 * jax.random.normal(jax.random.key(i), t.shape)
        for i, t in enumerate(model.apply(variables, 4, method=TRMModel.initial_latents))
    ]
    got = inner_forward(model, variables, tuple(z), x)

    rope = model.apply(variables, method=TRMModel.rope)

    def net(h, inj):
        return model.apply(variables, h, inj, rope, method=TRMModel.L_net)

    def s(zl):
        total = sum(zl[1:], jnp.zeros_like(zl[1]))
        return total / 4 if latent_sum == "mean" else total

    for _ in range(cfg.H_cycles):
        for l in range(cfg.L_cycles):
            z[1 + l] = net(s(z), z[0] + x)
        z[0] = net(z[0], s(z))
    for a, b in zip(got, z):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-5)
    with pytest.raises(ValueError, match="latent_sum"):
        ModelConfig(vocab_size=3, seq_len=4, arch="trm_hier6", latent_sum="max")


def test_checkpoints_from_before_a_model_field_existed_stay_loadable():
    cfg = ModelConfig(**{**TINY, "arch": "trm_hier6", "L_cycles": 2})
    old = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "latent_sum"}
    checkpoint.check_compatible({"model": old}, cfg, "old")  # had the default, "sum"
    with pytest.raises(checkpoint.CheckpointError, match="latent_sum: checkpoint 'sum'"):
        checkpoint.check_compatible(
            {"model": old}, dataclasses.replace(cfg, latent_sum="mean"), "old"
        )
