"""The TRM net, its variants and the latent recursion (reference §3.3–§3.8, §4).

``TRMModel`` is a linen module that owns the parameters (embeddings, the reasoning module(s),
``lm_head``, ``q_head``) and the fixed initial states (collection ``constants``, never trained).
The recursion itself is a pure function, :func:`inner_forward`, that applies the module's methods
inside ``jax.lax.scan`` with the same parameters at every step, so compile time does not grow
with ``H_cycles`` or ``L_cycles``.

Paper names: y = z_H, z = z_L, T = H_cycles, n = L_cycles.

Shape letters: B batch, L grid length (seq_len), P puzzle prefix, S = P + L, D hidden,
E puzzle_emb_ndim, V vocabulary.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from trm_jax.model.config import ModelConfig
from trm_jax.model.layers import (
    Embed,
    Linear,
    Precision,
    ReasoningModule,
    precision,
    rope_tables,
    truncated_normal,
)

Latents = tuple[jax.Array, ...]

_LEARNED_POS_SCALE = 0.707106781


def compute_dtype(cfg: ModelConfig):
    """The activation dtype (the carry's); float64 (needs jax_enable_x64) is for numerical
    studies only."""
    return {"bfloat16": jnp.bfloat16, "float32": jnp.float32, "float64": jnp.float64}[
        cfg.forward_dtype
    ]


def model_precision(cfg: ModelConfig) -> Precision:
    """How this model's matmuls and elementwise work run on this machine (layers.Precision)."""
    return precision(compute_dtype(cfg), cfg.activation_storage)


def matmul_path(cfg: ModelConfig) -> str:
    """Name of the matmul path the model takes here: ``f32``, ``bf16->f32`` (bf16 operands,
    float32 results), ``bf16 upcast to f32`` (CPUs without bf16 units)."""
    return model_precision(cfg).path


class TRMModel(nn.Module):
    """Parameters and per-call functions of every architecture in ``ModelConfig.arch``."""

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        dt = model_precision(cfg)
        D = cfg.hidden_size
        self.embed_tokens = Embed(cfg.vocab_size, D, 1.0 / math.sqrt(D), dt)
        if cfg.pos_encodings == "learned":
            self.embed_pos = Embed(cfg.total_len, D, 1.0 / math.sqrt(D), dt)
        self.lm_head = Linear(cfg.vocab_size, dt)
        self.q_head = Linear(
            2,
            dt,
            use_bias=True,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.constant(-5.0),
        )
        mlp_t_inner = cfg.swiglu_width(cfg.total_len) if cfg.mlp_t else None

        def level(num_layers, name):
            return ReasoningModule(
                num_layers,
                cfg.num_heads,
                cfg.head_dim,
                cfg.swiglu_width(D),
                mlp_t_inner,
                cfg.rms_norm_eps,
                dt,
                remat_blocks=cfg.remat == "block",
                name=name,
            )

        if cfg.arch in ("trm", "trm_singlez", "trm_hier6", "hrm"):
            self.L_level = level(cfg.L_layers, "L_level")
        if cfg.arch in ("hrm", "transformer"):
            self.H_level = level(cfg.H_layers, "H_level")
        inits = {}
        for name in cfg.init_names:
            inits[name] = self.variable(
                "constants",
                name,
                lambda: truncated_normal(1.0)(self.make_rng("params"), (D,)),
            )
        self.inits = inits

    # ---- pieces ------------------------------------------------------------------------------
    def embed(self, inputs_BxL: jax.Array, puzzle_rows_BxE: jax.Array | None) -> jax.Array:
        """Input embedding x [B, S, D]: puzzle prefix + tokens, positions, scale sqrt(D)."""
        cfg = self.cfg
        p = model_precision(cfg)
        x_BxLxD = self.embed_tokens(inputs_BxL)
        B = inputs_BxL.shape[0]
        if cfg.puzzle_len:
            rows = p.round(puzzle_rows_BxE)
            pad = cfg.puzzle_len * cfg.hidden_size - rows.shape[-1]
            if pad:
                rows = jnp.pad(rows, ((0, 0), (0, pad)))
            prefix_BxPxD = rows.reshape(B, cfg.puzzle_len, cfg.hidden_size)
            x_BxSxD = jnp.concatenate([prefix_BxPxD, x_BxLxD], axis=1)
        else:
            x_BxSxD = x_BxLxD
        if cfg.pos_encodings == "learned":
            pos_SxD = self.embed_pos(jnp.arange(cfg.total_len))
            x_BxSxD = p.round(_LEARNED_POS_SCALE * p.round(x_BxSxD + pos_SxD[None]))
        return p.round(x_BxSxD * math.sqrt(cfg.hidden_size))

    def rope(self):
        cfg = self.cfg
        if cfg.pos_encodings != "rope" or cfg.mlp_t:
            return None
        return rope_tables(cfg.total_len, cfg.head_dim, cfg.rope_theta)

    def L_net(
        self, h: jax.Array, injection: jax.Array | None, rope, seq_major: bool = False
    ) -> jax.Array:
        """The latent net on [B, S, D] (or [S, B, D] with ``seq_major``), returned in h's dtype
        (exact: outputs are rounded to the activation dtype whatever the storage)."""
        return self.L_level(h, injection, rope, seq_major).astype(h.dtype)

    def H_net(
        self, h: jax.Array, injection: jax.Array | None, rope, seq_major: bool = False
    ) -> jax.Array:
        """The high-level net on [B, S, D] (or [S, B, D] with ``seq_major``), in h's dtype."""
        return self.H_level(h, injection, rope, seq_major).astype(h.dtype)

    def heads(self, z_BxSxD: jax.Array):
        """logits [B, L, V] (prefix dropped, in the activation dtype) and float32 q_halt,
        q_continue [B]."""
        dt = compute_dtype(self.cfg)
        logits_BxLxV = self.lm_head(z_BxSxD)[:, self.cfg.puzzle_len :].astype(dt)
        q_Bx2 = self.q_head(z_BxSxD[:, 0]).astype(jnp.float32)
        return logits_BxLxV, q_Bx2[:, 0], q_Bx2[:, 1]

    def initial_latents(self, batch_size: int) -> Latents:
        """Every latent reset to its fixed init vector, broadcast to [B, S, D]."""
        cfg = self.cfg
        shape = (batch_size, cfg.total_len, cfg.hidden_size)
        dt = compute_dtype(cfg)
        return tuple(
            jnp.broadcast_to(self.inits[n].value.astype(dt), shape) for n in cfg.init_names
        )

    def __call__(self, inputs_BxL, puzzle_rows_BxE):
        """Touches every parameter once (used by ``init``); returns the heads of one pass."""
        x = self.embed(inputs_BxL, puzzle_rows_BxE)
        z = self.initial_latents(inputs_BxL.shape[0])
        rope = self.rope()
        h = z[0]
        if self.cfg.arch in ("trm", "trm_singlez", "trm_hier6", "hrm"):
            h = self.L_net(h, x, rope)
        if self.cfg.arch in ("hrm", "transformer"):
            h = self.H_net(h, x, rope)
        return self.heads(h)


# ---- the recursion, as pure functions of (module, variables) ------------------------------------


def _apply(model: TRMModel, variables, method, *args):
    return model.apply(variables, *args, method=method)


def _scan(f, init, length: int, unroll: int):
    """Apply ``f`` ``length`` times under lax.scan (no per-step outputs)."""
    if length <= 0:
        return init

    def body(carry, _):
        return f(carry), None

    out, _ = jax.lax.scan(body, init, None, length=length, unroll=max(1, min(unroll, length)))
    return out


def _scan_over(f, init, xs: jax.Array, unroll: int):
    """``carry = f(carry, x)`` for each x of ``xs`` under lax.scan."""
    length = xs.shape[0]
    if length == 0:
        return init
    out, _ = jax.lax.scan(
        lambda c, x: (f(c, x), None), init, xs, unroll=max(1, min(unroll, length))
    )
    return out


def inner_forward(model: TRMModel, variables, z: Latents, x_BxSxD: jax.Array) -> Latents:
    """One supervision step's latent recursion; returns the new latents (gradient-stopped).

    Gradient flows only through the last H cycle (TRM) or the last L and H update (HRM); the
    warm-up cycles run under ``stop_gradient``. The incoming latents get no gradient either.
    """
    # The recursion runs sequence-major ([S, B, D]: every matmul is 2-D and the token MLP needs
    # no transposes, see layers.py); only its inputs and outputs are transposed.
    # Inside, arrays are held in the precision's storage dtype (float32 on CPUs, values still
    # rounded to the activation dtype); the carry stays in the activation dtype (exact).
    p = model_precision(model.cfg)
    dt = compute_dtype(model.cfg)
    z_SxBxD = tuple(jnp.swapaxes(jax.lax.stop_gradient(t), 0, 1).astype(p.storage) for t in z)
    x_SxBxD = jnp.swapaxes(x_BxSxD, 0, 1).astype(p.storage)
    z_SxBxD = _recursion(model, variables, z_SxBxD, x_SxBxD)
    return tuple(jnp.swapaxes(t, 0, 1).astype(dt) for t in z_SxBxD)


def _recursion(model: TRMModel, variables, z: Latents, x_SxBxD: jax.Array) -> Latents:
    """:func:`inner_forward` on sequence-major latents and input (all [S, B, D])."""
    cfg = model.cfg
    rope = _apply(model, variables, TRMModel.rope)
    unroll = cfg.scan_unroll
    rnd = model_precision(cfg).round  # a bf16 add in the reference

    def L(h, inj):
        return _apply(model, variables, TRMModel.L_net, h, inj, rope, True)

    def H(h, inj):
        return _apply(model, variables, TRMModel.H_net, h, inj, rope, True)

    # remat "full": the graded nets keep only their inputs for the backward pass and recompute
    # everything else; "dots": they also keep their matmul outputs. (Checkpointing the whole
    # cycle instead would store the same residuals again when it is recomputed: no memory
    # saved.) "block" is handled inside the module.
    if cfg.remat in ("full", "dots"):
        policy = jax.checkpoint_policies.dots_saveable if cfg.remat == "dots" else None
        L_graded = jax.checkpoint(L, policy=policy)
        H_graded = jax.checkpoint(H, policy=policy)
    else:
        L_graded, H_graded = L, H

    if cfg.arch == "trm":
        # A cycle is L_cycles latent updates z_L = net(z_L, z_H + x), then one answer update
        # z_H = net(z_H, z_L): written as ONE scan over L_cycles + 1 steps that applies the net
        # once per step to selected inputs, so XLA compiles the net once per scan rather than
        # twice, and the warm-up is one flat scan. Selecting is exact: same values as the
        # reference's nested loops.
        def step(net):
            def apply(zs, is_latent):
                zH, zL = zs
                h = jnp.where(is_latent, zL, zH)
                out = net(h, jnp.where(is_latent, rnd(zH + x_SxBxD), zL))
                return jnp.where(is_latent, zH, out), jnp.where(is_latent, out, zL)

            return apply

        is_latent = jnp.arange(cfg.L_cycles + 1) < cfg.L_cycles
        warm_up = jnp.tile(is_latent, cfg.H_cycles - 1)
        z = jax.lax.stop_gradient(_scan_over(step(L), z, warm_up, unroll))
        return tuple(_scan_over(step(L_graded), z, is_latent, unroll))

    if cfg.arch == "trm_singlez":

        def cycle(zs, net):
            (zL,) = zs
            zL = _scan(lambda zl: net(rnd(zl + x_SxBxD), None), zL, cfg.L_cycles, unroll)
            return (net(zL, None),)

    elif cfg.arch == "trm_hier6":

        def latent_sum(zLs):
            total = zLs[0]
            for t in zLs[1:]:
                total = rnd(total + t)
            if cfg.latent_sum == "mean":
                return rnd(total * (1.0 / len(zLs)))
            return total

        def cycle(zs, net):
            zH, zLs = zs[0], list(zs[1:])
            # L step l overwrites latent l only; it reads the sum of all current latents.
            # Indexed by l, so unrolled in Python (at most num_latents = 6 steps).
            for l in range(cfg.L_cycles):
                zLs[l] = net(latent_sum(zLs), rnd(zH + x_SxBxD))
            return (net(zH, latent_sum(zLs)), *zLs)

    elif cfg.arch == "hrm":

        def hrm_cycle(zs, last: bool):
            zH, zL = zs
            zL = _scan(
                lambda zl: L(zl, rnd(zH + x_SxBxD)), zL, cfg.L_cycles - (1 if last else 0), unroll
            )
            if last:
                return zH, zL
            return H(zH, zL), zL

        # Everything but the final L update and final H update runs without gradient.
        zs = _scan(lambda zs: hrm_cycle(zs, False), z, cfg.H_cycles - 1, unroll)
        zH, zL = jax.lax.stop_gradient(hrm_cycle(zs, True))
        zL = L_graded(zL, rnd(zH + x_SxBxD))
        zH = H_graded(zH, zL)
        return (zH, zL)

    else:  # transformer: one fully graded pass of the deep stack per ACT step.
        return (H_graded(z[0], x_SxBxD),)

    z = _scan(lambda zs: cycle(zs, L), z, cfg.H_cycles - 1, unroll)
    z = jax.lax.stop_gradient(z)
    return tuple(cycle(z, L_graded))


def init_variables(model: TRMModel, rng: jax.Array, batch_size: int = 1):
    """Initialise ``{'params', 'constants'}`` with the reference's initialisers."""
    cfg = model.cfg
    inputs = jnp.zeros((batch_size, cfg.seq_len), jnp.int32)
    rows = jnp.zeros((batch_size, max(cfg.puzzle_emb_ndim, 1)), jnp.float32)
    return model.init({"params": rng}, inputs, rows if cfg.puzzle_emb_ndim else None)
