"""Layers of the TRM net (reference §3.3–§3.5), as Flax linen modules.

Parameters are float32; every matmul casts its weight to the activation dtype (``forward_dtype``),
as the reference's CastedLinear does. RMSNorm and RoPE run in float32 internally.

Shape letters: B batch, S sequence (puzzle prefix + grid), D hidden, H heads, K head dim,
I SwiGLU inner width, V vocabulary.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

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


def rms_norm(x: jax.Array, eps: float, axis: int = -1) -> jax.Array:
    """RMSNorm without weight, computed in float32 and cast back to the input dtype."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True) + eps)
    return y.astype(x.dtype)


def silu(x: jax.Array) -> jax.Array:
    """x * sigmoid(x), written as x / (1 + exp(-x)) like PyTorch's CPU kernel."""
    return x / (1.0 + jnp.exp(-x))


def _dot(x: jax.Array, kernel: jax.Array, dtype) -> jax.Array:
    """x [..., in] @ kernel [in, out] in ``dtype``, flattened to 2-D (much faster on XLA:CPU)."""
    x2 = x.reshape(-1, x.shape[-1]).astype(dtype)
    y = jnp.dot(x2, kernel.astype(dtype))
    return y.reshape(x.shape[:-1] + (kernel.shape[-1],))


class Linear(nn.Module):
    """y = x @ W (+ b) with W [in, out] float32, cast to ``dtype`` at use."""

    features: int
    dtype: jnp.dtype = jnp.float32
    use_bias: bool = False
    kernel_init: object = lecun_truncated_normal
    bias_init: object = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        y = _dot(x, kernel, self.dtype)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y


class SplitLinear(nn.Module):
    """One fused projection [in, sum(parts)] applied as one matmul per part.

    Keeps the reference's fused parameter (gate|up, q|k|v) while slicing the small weight
    instead of the large activation: splitting the activation costs XLA:CPU a strided copy that
    made the SwiGLU 2x slower.
    """

    parts: tuple[int, ...]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        total = sum(self.parts)
        kernel = self.param("kernel", lecun_truncated_normal, (x.shape[-1], total), jnp.float32)
        outs, start = [], 0
        for width in self.parts:
            outs.append(_dot(x, kernel[:, start : start + width], self.dtype))
            start += width
        return tuple(outs)


class Embed(nn.Module):
    """Lookup table [num, D] float32 (init std ``std``), read in ``dtype``."""

    num_embeddings: int
    features: int
    std: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        table = self.param(
            "embedding", truncated_normal(self.std), (self.num_embeddings, self.features)
        )
        return jnp.take(table.astype(self.dtype), ids, axis=0)


class SwiGLU(nn.Module):
    """down(silu(gate) * up) with one fused gate|up projection [D, 2I] (gate first)."""

    inner: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # Everything on a 2-D [tokens, features] view: XLA:CPU fuses the elementwise SiLU
        # product about 2x faster on 2-D arrays than on [B, S, I] ones.
        x2 = x.reshape(-1, x.shape[-1])
        gate, up = SplitLinear((self.inner, self.inner), self.dtype, name="gate_up_proj")(x2)
        out = Linear(x.shape[-1], self.dtype, name="down_proj")(silu(gate) * up)
        return out.reshape(x.shape)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin [S, K] for rotate-half RoPE, float32, positions 0..S-1."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = jnp.outer(jnp.arange(seq_len, dtype=jnp.float32), inv_freq)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x_BxSxHxK: jax.Array, cos_SxK: jax.Array, sin_SxK: jax.Array) -> jax.Array:
    """q*cos + rotate_half(q)*sin in float32 with rotate_half(x) = concat(-x2, x1)."""
    x = x_BxSxHxK.astype(jnp.promote_types(x_BxSxHxK.dtype, jnp.float32))
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    cos = cos_SxK[None, :, None, :]
    sin = sin_SxK[None, :, None, :]
    return (x * cos + rotated * sin).astype(x_BxSxHxK.dtype)


class Attention(nn.Module):
    """Non-causal multi-head attention, fused q|k|v projection, optional RoPE.

    head_dim = hidden // num_heads (floored, as the reference), so the attention width
    num_heads * head_dim may be smaller than hidden (12 heads on 512 -> 504).
    """

    num_heads: int
    head_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxSxD: jax.Array, rope: tuple[jax.Array, jax.Array] | None) -> jax.Array:
        B, S, D = h_BxSxD.shape
        H, K = self.num_heads, self.head_dim
        q, k, v = SplitLinear((H * K,) * 3, self.dtype, name="qkv_proj")(h_BxSxD)
        q_BxSxHxK, k_BxSxHxK, v_BxSxHxK = (t.reshape(B, S, H, K) for t in (q, k, v))
        if rope is not None:
            q_BxSxHxK = apply_rope(q_BxSxHxK, *rope)
            k_BxSxHxK = apply_rope(k_BxSxHxK, *rope)
        scores_BxHxSxS = jnp.einsum(
            "bqhk,bshk->bhqs", q_BxSxHxK, k_BxSxHxK, preferred_element_type=jnp.float32
        ) * (1.0 / math.sqrt(K))
        probs = jax.nn.softmax(scores_BxHxSxS, axis=-1).astype(self.dtype)
        out_BxSxHxK = jnp.einsum("bhqs,bshk->bqhk", probs, v_BxSxHxK)
        return Linear(D, self.dtype, name="o_proj")(out_BxSxHxK.reshape(B, S, H * K))


class Block(nn.Module):
    """Post-norm block: token mixing (attention, or SwiGLU over the token axis), then SwiGLU."""

    num_heads: int
    head_dim: int
    mlp_inner: int
    mlp_t_inner: int | None
    eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxSxD: jax.Array, rope) -> jax.Array:
        if self.mlp_t_inner is not None:
            # Token mixing: SwiGLU across S; this norm also runs over S, before transposing back.
            h_BxDxS = jnp.swapaxes(h_BxSxD, 1, 2)
            mixed = SwiGLU(self.mlp_t_inner, self.dtype, name="mlp_t")(h_BxDxS)
            h_BxSxD = jnp.swapaxes(rms_norm(h_BxDxS + mixed, self.eps), 1, 2)
        else:
            attn = Attention(self.num_heads, self.head_dim, self.dtype, name="self_attn")
            h_BxSxD = rms_norm(h_BxSxD + attn(h_BxSxD, rope), self.eps)
        mlp = SwiGLU(self.mlp_inner, self.dtype, name="mlp")
        return rms_norm(h_BxSxD + mlp(h_BxSxD), self.eps)


class ReasoningModule(nn.Module):
    """net(h, injection) = blocks(h + injection): the reference's ``L_level`` / ``H_level``."""

    num_layers: int
    num_heads: int
    head_dim: int
    mlp_inner: int
    mlp_t_inner: int | None
    eps: float
    dtype: jnp.dtype = jnp.float32
    remat_blocks: bool = False

    @nn.compact
    def __call__(self, h_BxSxD: jax.Array, injection: jax.Array | None, rope) -> jax.Array:
        if injection is not None:
            h_BxSxD = h_BxSxD + injection
        block_cls = nn.remat(Block, static_argnums=()) if self.remat_blocks else Block
        for i in range(self.num_layers):
            h_BxSxD = block_cls(
                self.num_heads,
                self.head_dim,
                self.mlp_inner,
                self.mlp_t_inner,
                self.eps,
                self.dtype,
                name=f"layers_{i}",
            )(h_BxSxD, rope)
        return h_BxSxD
