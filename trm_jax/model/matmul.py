"""Precision and the matmul primitives of the TRM layers (split from ``layers.py``).

A :class:`Precision` says where activation values are rounded (where the reference rounds them),
the dtype they are stored in between (float32 on CPUs), and the dtype of the dots' operands (bf16
operands with float32 results wherever the hardware multiplies bf16). On CPUs with bf16 units the
products and their gradients are NN-form dots (the custom VJPs here), the only form XLA:CPU runs
in bf16 (docs/performance.md, "bf16 units").

Shape letters: M, K, N matrix dims; x any leading dims.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from trm_jax import hardware


@dataclasses.dataclass(frozen=True)
class Precision:
    """How a model of one ``forward_dtype`` runs: which dtype rounds, stores and multiplies.

    ``dtype``    the reference's activation dtype (``forward_dtype``): every value is rounded to
                 it exactly where the reference rounds (dot outputs, SiLU, the gated product,
                 residual adds, norms, RoPE, embeddings), so bfloat16 results keep the
                 reference's semantics on every path below.
    ``storage``  the dtype arrays are held in between those points, i.e. the dtype elementwise
                 work runs in. float32 on CPUs: XLA:CPU runs bf16 elementwise ops 2-5x slower
                 than float32 ones (``silu(g) * u``: docs/performance.md); a bf16 value held in
                 float32 is exact, so only speed and memory change. bfloat16 on accelerators,
                 where activation memory matters and bf16 elementwise work is native.
    ``operand``  the dtype of every dot's operands; results are always float32 (or float64).
                 bfloat16 wherever the hardware multiplies bf16 (GPUs, TPUs, CPUs with AMX-BF16
                 or AVX512-BF16: a bf16 x bf16 -> f32 dot is the fast kernel there); float32 on
                 CPUs without bf16 units (bf16 products are exact in float32, so this IS a bf16
                 matmul with float32 accumulation, and faster there).
    ``nn_grads`` bf16 dots get a custom VJP that computes both gradient products as plain
                 row-major (NN) bf16 x bf16 -> f32 dots with the smaller operand transposed
                 explicitly; on XLA:CPU the transposed-operand forms autodiff emits miss the fast
                 kernels (2-5x slower, scripts/dot_forms.py). Off on accelerators.
    """

    dtype: Any
    storage: Any
    operand: Any
    nn_grads: bool = False

    @property
    def result(self):
        """The dtype a dot returns: float32, or float64 for float64 models."""
        return jnp.promote_types(self.operand, jnp.float32)

    @property
    def path(self) -> str:
        """Short name of the matmul path: ``f32``, ``bf16->f32``, ``bf16 upcast to f32``, ..."""
        if jnp.dtype(self.dtype) != jnp.bfloat16:
            return jnp.dtype(self.dtype).name.replace("float", "f")
        if jnp.dtype(self.operand) == jnp.bfloat16:
            return "bf16->f32"
        return "bf16 upcast to f32"

    def round(self, x: jax.Array) -> jax.Array:
        """x rounded to ``dtype`` where the reference rounds, held in ``storage``."""
        return x.astype(self.dtype).astype(self.storage)

    def operand_of(self, x: jax.Array) -> jax.Array:
        """x rounded to ``dtype`` (as the reference's casts) in the dots' operand dtype."""
        return x.astype(self.dtype).astype(self.operand)


STORAGE = ("auto", "bfloat16", "float32")


def precision(dtype, storage: str = "auto", backend: str | None = None, units=None) -> Precision:
    """The :class:`Precision` of ``dtype`` on ``backend`` (default: JAX's) and this CPU.

    ``storage`` "auto": float32 on CPUs, ``dtype`` elsewhere; "bfloat16" / "float32" force it
    (for bf16 models). ``units``: the CPU's bf16 units (default :func:`hardware.bf16_units`).
    """
    dtype = jnp.dtype(dtype)
    if dtype != jnp.bfloat16:
        return Precision(dtype, dtype, dtype)
    backend = backend or jax.default_backend()
    if storage not in STORAGE:
        raise ValueError(f"model.activation_storage must be one of {STORAGE}, got {storage!r}.")
    on_cpu = backend == "cpu"
    store = jnp.dtype(storage) if storage != "auto" else jnp.dtype(jnp.float32 if on_cpu else dtype)
    if not on_cpu:
        return Precision(dtype, store, dtype)
    units = hardware.bf16_units() if units is None else units
    if units == "none":
        return Precision(dtype, store, jnp.dtype(jnp.float32))
    return Precision(dtype, store, dtype, nn_grads=True)


def as_precision(dtype) -> Precision:
    """A module's ``dtype`` field: a :class:`Precision`, or a dtype resolved for this machine."""
    return dtype if isinstance(dtype, Precision) else precision(dtype)


def matmul_dtype(dtype):
    """The dtype a matmul of ``dtype`` operands runs in on this machine (see :class:`Precision`)."""
    return as_precision(dtype).operand


def materialized_transpose(x_MxK: jax.Array) -> jax.Array:
    """x [..., M, K] -> [..., K, M] (last two axes swapped), as a copy that XLA cannot fold
    into the dot that reads it.

    A plain ``transpose`` feeding a dot is folded into the dot's dimension numbers (XLA's
    TransposeFolding), which turns an NN product back into the transposed-operand form; XLA:CPU
    runs bf16 dots on YNNPACK only in NN form and upcasts the others to float32 (Eigen), so the
    weight gradients lost the bf16 kernels. An ``optimization_barrier`` does not help: XLA:CPU
    removes barriers before that pass. Written as reshape -> 3-D transpose -> reshape, the
    transpose is no longer a dot operand and stays a copy (checked in the optimised HLO by
    tests/test_precision.py). Where neither M nor K has a small factor, a plain transpose.
    """
    *lead, M, K = x_MxK.shape
    n = len(lead)
    batch = tuple(range(n))

    def factor(size):
        return next((f for f in (8, 4, 2, 3) if size % f == 0 and size > f), 1)

    if factor(K) > 1:
        f = factor(K)
        x = x_MxK.reshape(*lead, M, K // f, f)
        return jnp.transpose(x, (*batch, n + 1, n + 2, n)).reshape(*lead, K, M)
    if factor(M) > 1:
        f = factor(M)
        x = x_MxK.reshape(*lead, M // f, f, K)
        return jnp.transpose(x, (*batch, n + 2, n, n + 1)).reshape(*lead, K, M)
    return jnp.swapaxes(x_MxK, -1, -2)


def _nn_product(a_MxK: jax.Array, b_KxN: jax.Array) -> jax.Array:
    """a @ b, float32 result; leading axes (if any) are batch axes of both."""
    n = a_MxK.ndim - 2
    batch = tuple(range(n))
    dims = (((n + 1,), (n,)), (batch, batch))
    return jax.lax.dot_general(a_MxK, b_KxN, dims, preferred_element_type=jnp.float32)


def weight_grad(x_MxK: jax.Array, g_MxN: jax.Array) -> jax.Array:
    """x^T g [K, N] (a weight gradient) as an NN product with float32 result.

    Transposes the narrower of x and g (measured: 1.1-2x faster than the other choice on the
    paper shapes); transposing g needs the small result transposed back.
    """
    if x_MxK.shape[1] <= g_MxN.shape[1]:
        return _nn_product(materialized_transpose(x_MxK), g_MxN)
    return materialized_transpose(_nn_product(materialized_transpose(g_MxN), x_MxK))


@jax.custom_vjp
def nn_matmul(a_MxK: jax.Array, b_KxN: jax.Array) -> jax.Array:
    """a @ b with a float32 result whose gradients are NN-form dots in the operands' dtype.

    The cotangent is rounded to the operand dtype (exact where the output was rounded to it, as
    every dot output of the model is) so each gradient product is bf16 x bf16 -> f32; the
    gradients come back in the operands' dtype, as autodiff of a bf16 matmul gives them.
    """
    return _nn_product(a_MxK, b_KxN)


def _nn_matmul_fwd(a_MxK, b_KxN):
    return nn_matmul(a_MxK, b_KxN), (a_MxK, b_KxN)


def _nn_matmul_bwd(res, g_MxN):
    a_MxK, b_KxN = res
    g_MxN = g_MxN.astype(a_MxK.dtype)
    # da = g b^T with b (the weight: small) transposed; db = a^T g (the weight gradient).
    da = _nn_product(g_MxN, materialized_transpose(b_KxN)).astype(a_MxK.dtype)
    db = weight_grad(a_MxK, g_MxN).astype(b_KxN.dtype)
    return da, db


nn_matmul.defvjp(_nn_matmul_fwd, _nn_matmul_bwd)


@jax.custom_vjp
def nn_matmul_left(w_KxN: jax.Array, x_KxM: jax.Array) -> jax.Array:
    """w^T @ x [N, M] (the token MLP's product from the left) as NN-form dots, float32 result;
    gradients as :func:`nn_matmul`: dx = w g, dw = x g^T."""
    return _nn_product(materialized_transpose(w_KxN), x_KxM)


def _nn_matmul_left_fwd(w_KxN, x_KxM):
    return nn_matmul_left(w_KxN, x_KxM), (w_KxN, x_KxM)


def _nn_matmul_left_bwd(res, g_NxM):
    w_KxN, x_KxM = res
    g_NxM = g_NxM.astype(x_KxM.dtype)
    dx = _nn_product(w_KxN, g_NxM).astype(x_KxM.dtype)
    dw = _nn_product(x_KxM, materialized_transpose(g_NxM)).astype(w_KxN.dtype)
    return dw, dx


nn_matmul_left.defvjp(_nn_matmul_left_fwd, _nn_matmul_left_bwd)


@jax.custom_vjp
def batched_nn_matmul(a_xMxK: jax.Array, b_xKxN: jax.Array) -> jax.Array:
    """Batched a @ b [..., M, N] (float32 result) with NN-form gradient products:
    da = g T(b), db = T(a) g with materialised transposes (:func:`materialized_transpose`)."""
    return _nn_product(a_xMxK, b_xKxN)


def _batched_nn_matmul_fwd(a, b):
    return batched_nn_matmul(a, b), (a, b)


def _batched_nn_matmul_bwd(res, g):
    a, b = res
    g = g.astype(a.dtype)
    da = _nn_product(g, materialized_transpose(b)).astype(a.dtype)
    db = _nn_product(materialized_transpose(a), g).astype(b.dtype)
    return da, db


batched_nn_matmul.defvjp(_batched_nn_matmul_fwd, _batched_nn_matmul_bwd)


def _einsum_vjp_specs(spec: str) -> tuple[str, str]:
    ins, out = spec.split("->")
    a, b = ins.split(",")
    return f"{out},{b}->{a}", f"{a},{out}->{b}"


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def low_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """Two-operand einsum with a float32 result whose gradient products take the operands' dtype
    (bf16 x bf16 -> f32 for bf16 operands). Every index of one operand must appear in the other
    or in the output (true of attention's two products)."""
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _low_einsum_fwd(spec, a, b):
    return low_einsum(spec, a, b), (a, b)


def _low_einsum_bwd(spec, res, g):
    a, b = res
    g = g.astype(a.dtype)
    spec_a, spec_b = _einsum_vjp_specs(spec)
    da = jnp.einsum(spec_a, g, b, preferred_element_type=jnp.float32).astype(a.dtype)
    db = jnp.einsum(spec_b, a, g, preferred_element_type=jnp.float32).astype(b.dtype)
    return da, db


low_einsum.defvjp(_low_einsum_fwd, _low_einsum_bwd)


def einsum(spec: str, a: jax.Array, b: jax.Array, p: Precision) -> jax.Array:
    """einsum of two activations in ``p``'s operand dtype, result rounded and stored per ``p``."""
    a, b = p.operand_of(a), p.operand_of(b)
    if jnp.dtype(p.operand) == jnp.bfloat16:
        y = low_einsum(spec, a, b)
    else:
        y = jnp.einsum(spec, a, b, preferred_element_type=p.result)
    return p.round(y)


def matmul(a_MxK: jax.Array, b_KxN: jax.Array, p: Precision) -> jax.Array:
    """a @ b of 2-D operands in ``p``'s operand dtype; float32 result, rounded per ``p``."""
    a, b = p.operand_of(a_MxK), p.operand_of(b_KxN)
    if p.nn_grads:
        y = nn_matmul(a, b)
    elif jnp.dtype(p.operand) == jnp.bfloat16:
        y = low_einsum("mk,kn->mn", a, b)
    else:
        y = jnp.dot(a, b, preferred_element_type=p.result)
    return p.round(y)
