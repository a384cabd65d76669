"""Layers of the TRM net (reference §3.3–§3.5), as Flax linen modules.

Parameters are float32; every matmul casts its weight to the activation dtype (``forward_dtype``),
as the reference's CastedLinear does. RMSNorm and RoPE run in float32 internally.

Every module's ``dtype`` is a :class:`Precision` (or a plain dtype, resolved for this machine by
:func:`precision`): the activation dtype values are rounded to where the reference rounds them,
the dtype they are stored in between (float32 on CPUs), and the dtype of the dots' operands
(bf16 operands with float32 results wherever the hardware multiplies bf16). On CPUs with bf16
units the products and their gradients are NN-form dots (custom VJPs below), the only form
XLA:CPU runs in bf16 (docs/performance.md, "bf16 units").

Blocks take the residual stream either as [B, S, D] or, inside the recursion, sequence-major as
[S, B, D] (``seq_major=True``). In that layout every matmul is a plain 2-D one: the channel MLP
and the projections act on [S*B, D], and the token-mixing MLP (``mlp_t``) acts from the left on
[S, B*D], so the recursion needs no transposes.

Shape letters: B batch, S sequence (puzzle prefix + grid), D hidden, H heads, K head dim,
I SwiGLU inner width, V vocabulary, N any number of columns, F features.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trm_jax.model.matmul import (  # noqa: F401 (re-exported: layers.nn_matmul, ...)
    STORAGE,
    Precision,
    as_precision,
    batched_nn_matmul,
    einsum,
    low_einsum,
    materialized_transpose,
    matmul,
    matmul_dtype,
    nn_matmul,
    nn_matmul_left,
    precision,
    weight_grad,
)

# Ratio of the std of a standard normal truncated at +-2 to 1; dividing by it restores the
# requested std (reference §3.4 "Truncated normal").
_TRUNC_STD = 0.87962566103423978


def truncated_normal(std: float):
    """Normal init truncated at +-2 std and rescaled so the actual std equals ``std``."""

    def init(key, shape, dtype=jnp.float32):
        if std == 0:
            return jnp.zeros(shape, dtype)
        x = jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
        return (x * (std / _TRUNC_STD)).astype(dtype)

    return init


def lecun_truncated_normal(key, shape, dtype=jnp.float32):
    """LeCun init for a kernel stored [in, out]: std 1/sqrt(in), truncated and rescaled."""
    return truncated_normal(1.0 / math.sqrt(shape[0]))(key, shape, dtype)


def rms_norm(x: jax.Array, eps: float, axis: int = -1, dtype=None) -> jax.Array:
    """RMSNorm without weight, computed in float32 and cast back to the input dtype.

    ``dtype`` (default the input's): the dtype the result is rounded to before that cast.
    """
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True) + eps)
    return y.astype(dtype or x.dtype).astype(x.dtype)


def silu(x: jax.Array) -> jax.Array:
    """x * sigmoid(x), written as x / (1 + exp(-x)) like PyTorch's CPU kernel."""
    return x / (1.0 + jnp.exp(-x))


def _dot(x: jax.Array, kernel: jax.Array, p: Precision, feature_axis: int = -1) -> jax.Array:
    """Apply kernel [in, out] to the features of x, as one 2-D matmul (see :func:`matmul`).

    ``feature_axis=-1``: x [..., in] -> [..., out] (x @ kernel; flattening to 2-D is much faster
    on XLA:CPU). ``feature_axis=0``: x [in, N] -> [out, N] (kernel^T @ x, no transpose of x;
    with NN-form gradients the small kernel is transposed explicitly, so the product is NN).
    """
    if feature_axis == 0:
        if p.nn_grads:
            return p.round(nn_matmul_left(p.operand_of(kernel), p.operand_of(x)))
        if jnp.dtype(p.operand) == jnp.bfloat16:
            return einsum("io,in->on", kernel, x, p)
        k, xo = p.operand_of(kernel), p.operand_of(x)
        y = jax.lax.dot_general(k, xo, (((0,), (0,)), ((), ())), preferred_element_type=p.result)
        return p.round(y)
    y = matmul(x.reshape(-1, x.shape[-1]), kernel, p)
    return y.reshape(x.shape[:-1] + (kernel.shape[-1],))


class Linear(nn.Module):
    """y = x @ W (+ b) with W [in, out] float32, cast to ``dtype`` at use."""

    features: int
    dtype: Any = jnp.float32  # a dtype or a Precision
    use_bias: bool = False
    kernel_init: object = lecun_truncated_normal
    bias_init: object = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, feature_axis: int = -1) -> jax.Array:
        """x [..., in] -> [..., out]; or x [in, N] -> [out, N] with ``feature_axis=0``."""
        in_features = x.shape[feature_axis]
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
        p = as_precision(self.dtype)
        y = _dot(x, kernel, p, feature_axis)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = p.round(y + p.round(bias[:, None] if feature_axis == 0 else bias))
        return y


class SplitLinear(nn.Module):
    """One fused projection [in, sum(parts)] applied as one matmul per part.

    Keeps the reference's fused parameter (gate|up, q|k|v) while slicing the small weight
    instead of the large activation: splitting the activation costs XLA:CPU a strided copy that
    made the SwiGLU 2x slower.
    """

    parts: tuple[int, ...]
    dtype: Any = jnp.float32  # a dtype or a Precision

    @nn.compact
    def __call__(self, x: jax.Array, feature_axis: int = -1) -> tuple[jax.Array, ...]:
        """One output per part, as :class:`Linear` (``feature_axis`` -1 or 0)."""
        total = sum(self.parts)
        shape = (x.shape[feature_axis], total)
        kernel = self.param("kernel", lecun_truncated_normal, shape, jnp.float32)
        outs, start = [], 0
        for width in self.parts:
            part = kernel[:, start : start + width]
            outs.append(_dot(x, part, as_precision(self.dtype), feature_axis))
            start += width
        return tuple(outs)


class Embed(nn.Module):
    """Lookup table [num, D] float32 (init std ``std``), read in ``dtype``."""

    num_embeddings: int
    features: int
    std: float
    dtype: Any = jnp.float32  # a dtype or a Precision

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        table = self.param(
            "embedding", truncated_normal(self.std), (self.num_embeddings, self.features)
        )
        return jnp.take(as_precision(self.dtype).round(table), ids, axis=0)


class SwiGLU(nn.Module):
    """down(silu(gate) * up) with one fused gate|up projection [D, 2I] (gate first)."""

    inner: int
    dtype: Any = jnp.float32  # a dtype or a Precision

    @nn.compact
    def __call__(self, x: jax.Array, feature_axis: int = -1) -> jax.Array:
        """x [..., F] -> [..., F]; or x [F, N] -> [F, N] with ``feature_axis=0``."""
        p = as_precision(self.dtype)
        gate_up = SplitLinear((self.inner, self.inner), p, name="gate_up_proj")
        down = Linear(x.shape[feature_axis], p, name="down_proj")

        def gated(gate, up):
            # silu and the product each rounded once, as the reference's two bf16 ops; computed
            # in float32 whatever the storage.
            silu_gate = p.round(silu(gate.astype(jnp.promote_types(gate.dtype, jnp.float32))))
            return p.round(silu_gate * up)

        if feature_axis == 0:
            gate_IxN, up_IxN = gate_up(x, feature_axis=0)
            return down(gated(gate_IxN, up_IxN), feature_axis=0)
        # Everything on a 2-D [tokens, features] view: XLA:CPU fuses the elementwise SiLU
        # product about 2x faster on 2-D arrays than on [B, S, I] ones.
        x_NxF = x.reshape(-1, x.shape[-1])
        gate_NxI, up_NxI = gate_up(x_NxF)
        return down(gated(gate_NxI, up_NxI)).reshape(x.shape)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin [S, K] for rotate-half RoPE, float32, positions 0..S-1."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = jnp.outer(jnp.arange(seq_len, dtype=jnp.float32), inv_freq)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x_BxSxHxK: jax.Array, cos_SxK: jax.Array, sin_SxK: jax.Array) -> jax.Array:
    """q*cos + rotate_half(q)*sin in float32 with rotate_half(x) = concat(-x2, x1)."""
    return _rope(x_BxSxHxK, cos_SxK[None, :, None, :], sin_SxK[None, :, None, :])


def _rope(x: jax.Array, cos: jax.Array, sin: jax.Array, dtype=None) -> jax.Array:
    """RoPE with cos and sin already broadcastable to x [..., K]; result rounded to ``dtype``
    (default x's) and returned in x's dtype."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    x1, x2 = jnp.split(x32, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x32 * cos + rotated * sin).astype(dtype or x.dtype).astype(x.dtype)


def _attention_scores(q_BxHxTxK, k_BxHxSxK, p: Precision) -> jax.Array:
    """q k^T [B, H, T, S] in ``p``'s operand dtype, float32 result (unrounded)."""
    q, k = p.operand_of(q_BxHxTxK), p.operand_of(k_BxHxSxK)
    if p.nn_grads:
        return batched_nn_matmul(q, materialized_transpose(k))
    if jnp.dtype(p.operand) == jnp.bfloat16:
        return low_einsum("bhtk,bhsk->bhts", q, k)
    return jnp.einsum("bhtk,bhsk->bhts", q, k, preferred_element_type=p.result)


def _attention_values(probs_BxHxTxS, v_BxHxSxK, p: Precision) -> jax.Array:
    """probs v [B, H, T, K] in ``p``'s operand dtype, float32 result (unrounded)."""
    a, v = p.operand_of(probs_BxHxTxS), p.operand_of(v_BxHxSxK)
    if p.nn_grads:
        return batched_nn_matmul(a, v)
    if jnp.dtype(p.operand) == jnp.bfloat16:
        return low_einsum("bhts,bhsk->bhtk", a, v)
    return jnp.einsum("bhts,bhsk->bhtk", a, v, preferred_element_type=p.result)


class Attention(nn.Module):
    """Non-causal multi-head attention, fused q|k|v projection, optional RoPE.

    head_dim = hidden // num_heads (floored, as the reference), so the attention width
    num_heads * head_dim may be smaller than hidden (12 heads on 512 -> 504).
    """

    num_heads: int
    head_dim: int
    dtype: Any = jnp.float32  # a dtype or a Precision

    @nn.compact
    def __call__(
        self, h: jax.Array, rope: tuple[jax.Array, jax.Array] | None, seq_major: bool = False
    ) -> jax.Array:
        """h [B, S, D] -> [B, S, D]; or [S, B, D] -> [S, B, D] with ``seq_major``."""
        D = h.shape[-1]
        H, K = self.num_heads, self.head_dim
        p = as_precision(self.dtype)
        q, k, v = SplitLinear((H * K,) * 3, p, name="qkv_proj")(h)
        # Heads-major [B, H, S, K] for the two batched matmuls: XLA:CPU runs them about twice
        # as fast on contiguous per-head blocks as on strided views of the token layout.
        to_heads, from_heads = ((1, 2, 0, 3), (2, 0, 1, 3)) if seq_major else ((0, 2, 1, 3),) * 2
        q_BxHxSxK, k_BxHxSxK, v_BxHxSxK = (
            jnp.transpose(t.reshape(h.shape[:2] + (H, K)), to_heads) for t in (q, k, v)
        )
        if rope is not None:
            cos_SxK, sin_SxK = rope
            q_BxHxSxK = _rope(q_BxHxSxK, cos_SxK, sin_SxK, p.dtype)
            k_BxHxSxK = _rope(k_BxHxSxK, cos_SxK, sin_SxK, p.dtype)
        # Scores and softmax stay float32 (unrounded), as before; the probabilities are
        # rounded to the activation dtype for the second product.
        scores_BxHxSxS = _attention_scores(q_BxHxSxK, k_BxHxSxK, p)
        scores_BxHxSxS = scores_BxHxSxS * (1.0 / math.sqrt(K))
        probs_BxHxSxS = p.round(jax.nn.softmax(scores_BxHxSxS, axis=-1))
        out_BxHxSxK = p.round(_attention_values(probs_BxHxSxS, v_BxHxSxK, p))
        out = jnp.transpose(out_BxHxSxK, from_heads)
        return Linear(D, p, name="o_proj")(out.reshape(h.shape[:2] + (H * K,)))


class Block(nn.Module):
    """Post-norm block: token mixing (attention, or SwiGLU over the token axis), then SwiGLU."""

    num_heads: int
    head_dim: int
    mlp_inner: int
    mlp_t_inner: int | None
    eps: float
    dtype: Any = jnp.float32  # a dtype or a Precision

    @nn.compact
    def __call__(self, h: jax.Array, rope, seq_major: bool = False) -> jax.Array:
        """h [B, S, D] -> [B, S, D]; or [S, B, D] -> [S, B, D] with ``seq_major``."""
        p = as_precision(self.dtype)

        def norm(residual_sum, axis=-1):
            # The residual sum is rounded (a bf16 add in the reference), then normalised.
            return rms_norm(p.round(residual_sum), self.eps, axis, p.dtype)

        if self.mlp_t_inner is not None:
            # Token mixing: SwiGLU across S; this norm also runs over S.
            mlp_t = SwiGLU(self.mlp_t_inner, p, name="mlp_t")
            if seq_major:
                # [S, B*D]: the token MLP is a matmul from the left; no transposes.
                S, B, D = h.shape
                h_SxN = h.reshape(S, B * D)
                h_SxN = norm(h_SxN + mlp_t(h_SxN, feature_axis=0), axis=0)
                h = h_SxN.reshape(S, B, D)
            else:
                h_BxDxS = jnp.swapaxes(h, 1, 2)
                h = jnp.swapaxes(norm(h_BxDxS + mlp_t(h_BxDxS)), 1, 2)
        else:
            attn = Attention(self.num_heads, self.head_dim, p, name="self_attn")
            h = norm(h + attn(h, rope, seq_major))
        mlp = SwiGLU(self.mlp_inner, p, name="mlp")
        return norm(h + mlp(h))


class ReasoningModule(nn.Module):
    """net(h, injection) = blocks(h + injection): the reference's ``L_level`` / ``H_level``."""

    num_layers: int
    num_heads: int
    head_dim: int
    mlp_inner: int
    mlp_t_inner: int | None
    eps: float
    dtype: Any = jnp.float32  # a dtype or a Precision
    remat_blocks: bool = False

    @nn.compact
    def __call__(
        self, h: jax.Array, injection: jax.Array | None, rope, seq_major: bool = False
    ) -> jax.Array:
        """h, injection [B, S, D]; or [S, B, D] with ``seq_major`` (see :class:`Block`)."""
        p = as_precision(self.dtype)
        if injection is not None:
            h = p.round(h + injection)
        # seq_major (argument 3, counting self) is a Python bool: static under remat.
        block_cls = nn.remat(Block, static_argnums=(3,)) if self.remat_blocks else Block
        for i in range(self.num_layers):
            h = block_cls(
                self.num_heads,
                self.head_dim,
                self.mlp_inner,
                self.mlp_t_inner,
                self.eps,
                p,
                name=f"layers_{i}",
            )(h, rope, seq_major)
        return h
