"""Optimisers, learning-rate schedule and EMA of the reference TRM training loop.

Reference: docs/reference-trm.md §5.1-§5.3 (pretrain.py, models/sparse_embedding.py,
models/ema.py of the official PyTorch code). Two optimisers are stepped on every training step:

* ``adam_atan2``: AdamATan2 over every trainable parameter (no parameter groups, no decay
  exclusions), betas (0.9, 0.95), decoupled weight decay, no epsilon.
* ``sparse_sign_sgd``: sign-SGD with decoupled decay for the puzzle-embedding table, touching only
  the rows looked up in the batch.

Both use the same schedule (``lr_schedule``; ``lr_at`` is its value at one step, with the end of
the decay allowed to be a traced value), each with its own base rate. Step numbering follows the
reference: its step counter is incremented before use, so the first optimiser update sees step 1
(lr = base / warmup). ``ema_update`` keeps the 0.999 shadow of the trainable parameters (not of
the puzzle table, which the reference holds as a buffer).

We do not deliberately differ from the reference anywhere in this module except one clamp: the
cosine's progress stops at 1 (the reference never steps past the end of its decay). Floating-point
results match it to float32 rounding (the order of a few multiplications differs, see
``adam_atan2``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "AdamAtan2State",
    "adam_atan2",
    "ema_update",
    "lr_at",
    "lr_schedule",
    "sparse_sign_sgd",
]


# --------------------------------------------------------------------------------------------------
# Learning-rate schedule (reference §5.2)


def lr_at(
    step: jax.typing.ArrayLike,
    base_lr: float,
    warmup_steps: int,
    total_steps: jax.typing.ArrayLike,
    min_ratio: float = 1.0,
) -> jax.Array:
    """``lr_schedule(base_lr, warmup_steps, total_steps, min_ratio)(step)``, with ``total_steps``
    allowed to be a traced value (the train state's decay horizon, which a time-budgeted run
    sets after measuring its speed)."""
    warmup = max(int(warmup_steps), 1)
    total_f = jnp.asarray(total_steps).astype(jnp.float32)
    decay_steps = jnp.maximum(total_f - float(warmup_steps), 1.0)
    step_f = jnp.asarray(step).astype(jnp.float32)
    warm_lr = base_lr * step_f / warmup
    # Clamped at the end of the decay: a step past it stays at the floor instead of climbing
    # back along the cosine (the reference never steps past its end, so nothing changes there).
    progress = jnp.minimum((step_f - warmup_steps) / decay_steps, 1.0)
    cosine = (1.0 - min_ratio) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
    decay_lr = base_lr * (min_ratio + jnp.maximum(0.0, cosine))
    return jnp.where(step_f < warmup_steps, warm_lr, decay_lr).astype(jnp.float32)


def lr_schedule(
    base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 1.0
) -> Callable[[jax.typing.ArrayLike], jax.Array]:
    """Linear warm-up then cosine decay toward ``min_ratio * base_lr``, as the reference.

    ``lr(step) = base_lr * step / warmup_steps`` for ``step < warmup_steps``, afterwards
    ``base_lr * (min_ratio + max(0, (1 - min_ratio) * 0.5 * (1 + cos(pi * progress))))`` with
    ``progress = (step - warmup_steps) / (total_steps - warmup_steps)``. The reference's default
    ``min_ratio = 1.0`` makes the rate constant after warm-up. Steps are numbered as in the
    reference: the first optimiser update uses ``step = 1`` (so its rate is ``base_lr /
    warmup_steps``, not 0). ``progress`` is clamped at 1: past ``total_steps`` the rate stays at
    ``min_ratio * base_lr`` (the reference never steps past its end, so its values are unchanged).

    The returned function accepts Python ints and traced integer arrays and returns a float32
    scalar array. Zero denominators (``warmup_steps == 0`` or ``total_steps == warmup_steps``)
    are treated as 1.
    """

    def schedule(step: jax.typing.ArrayLike) -> jax.Array:
        return lr_at(step, base_lr, warmup_steps, total_steps, min_ratio)

    return schedule


# --------------------------------------------------------------------------------------------------
# AdamATan2 (reference §5.1, item 2)


class AdamAtan2State(NamedTuple):
    """State of ``adam_atan2``: updates done so far and float32 first/second moments."""

    count: jax.Array  # int32 scalar: number of updates applied so far.
    mu: optax.Updates  # first moment, float32, same tree as the params.
    nu: optax.Updates  # second moment, float32, same tree as the params.


def adam_atan2(
    learning_rate: float | optax.Schedule,
    b1: float = 0.9,
    b2: float = 0.95,
    weight_decay: float = 0.1,
) -> optax.GradientTransformation:
    """AdamATan2 with decoupled weight decay, as the reference's ``adam-atan2`` package.

    Per element, with step ``t`` starting at 1 and ``lr = learning_rate(t)`` for a schedule::

        p <- p * (1 - lr * wd)                       # decay of the PRE-update parameter
        m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * atan2(m / (1 - b1^t), sqrt(v) / sqrt(1 - b2^t))

    No epsilon and no scaling constants (a = b = 1; lucidrains' variant with a = 1.27 is a
    different optimiser). The decay scales the parameter as it was before this update, so the
    update returned is ``u = -lr*wd*p - lr*atan2(...)`` and ``optax.apply_updates(p, u)`` gives
    the formula above (to float32 rounding: ``p - lr*wd*p`` instead of ``p * (1 - lr*wd)``).

    ``update`` needs ``params``. The schedule is called with the reference's step numbering (the
    first update uses ``schedule(1)``). Moments are float32 whatever the gradient dtype; the state
    is a pytree of arrays (checkpointable with orbax).
    """

    def init_fn(params: optax.Params) -> AdamAtan2State:
        zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32), params)
        return AdamAtan2State(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(
        updates: optax.Updates, state: AdamAtan2State, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamAtan2State]:
        if params is None:
            raise ValueError(
                "adam_atan2 applies decoupled weight decay and needs the current parameters: "
                "call update(grads, state, params)."
            )
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        lr = learning_rate(count) if callable(learning_rate) else learning_rate
        lr = jnp.asarray(lr, jnp.float32)
        bias_correction1 = 1.0 - b1**t
        bias_correction2_sqrt = jnp.sqrt(1.0 - b2**t)

        mu = jax.tree.map(
            lambda m, g: b1 * m + (1.0 - b1) * g.astype(jnp.float32), state.mu, updates
        )
        nu = jax.tree.map(
            lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g.astype(jnp.float32)), state.nu, updates
        )

        def param_update(m, v, p):
            direction = jnp.arctan2(m / bias_correction1, jnp.sqrt(v) / bias_correction2_sqrt)
            p32 = p.astype(jnp.float32)
            return (-(lr * weight_decay) * p32 - lr * direction).astype(p.dtype)

        new_updates = jax.tree.map(param_update, mu, nu, params)
        return new_updates, AdamAtan2State(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------------
# Sparse sign-SGD for the puzzle-embedding table (reference §5.1, item 1)


def sparse_sign_sgd(
    table: jax.Array,
    ids: jax.Array,
    row_grads: jax.Array,
    lr: jax.typing.ArrayLike,
    weight_decay: jax.typing.ArrayLike,
) -> jax.Array:
    """One step of the reference's sparse sign-SGD on the puzzle-embedding table.

    ``table`` is ``[N, D]``, ``ids`` the ``[B]`` rows looked up by the (global) batch and
    ``row_grads`` the ``[B, D]`` gradients of the looked-up rows. As in the reference, the
    gradients of duplicate ids are SUMMED, and every touched row is updated once::

        w <- w * (1 - lr * wd) - lr * sign(g_sum)

    Untouched rows get neither update nor decay and come back bit-identical. A touched row whose
    gradients cancel gets ``sign(0) = 0``: decay only. The sign makes any loss scaling irrelevant.

    No dense ``[N, D]`` gradient is ever built: the batch's ids are deduplicated (at most ``B``
    distinct rows), their gradients summed with ``segment_sum``, the touched rows gathered,
    updated and scattered back, so the work is O(B * D). Works under ``jit`` with the table
    donated and with the table sharded along its rows (``P('data', None)``). ``ids`` must lie in
    ``[0, N)``; out-of-range ids are silently ignored (they are used internally as padding).
    """
    num_rows = table.shape[0]
    batch = ids.shape[0]
    replicated = _replicated_sharding(table)
    if replicated is not None:
        # Explicit-sharding mesh: the (small) batch side is replicated so every shard of the table
        # sees all ids; the table itself stays sharded.
        ids = jax.sharding.reshard(ids, replicated)
        row_grads = jax.sharding.reshard(row_grads, replicated)
    ids = ids.reshape(-1).astype(jnp.int32)
    # Distinct ids in sorted order, padded to B slots with an out-of-range row that every gather
    # and scatter below drops.
    unique_ids, inverse = jnp.unique(ids, size=batch, fill_value=num_rows, return_inverse=True)
    grad_sum = jax.ops.segment_sum(
        row_grads.astype(jnp.float32), inverse.reshape(-1), num_segments=batch
    )
    rows = table.at[unique_ids].get(mode="fill", fill_value=0, out_sharding=replicated)
    rows = rows.astype(jnp.float32)
    lr = jnp.asarray(lr, jnp.float32)
    decay = 1.0 - lr * jnp.asarray(weight_decay, jnp.float32)
    new_rows = rows * decay - lr * jnp.sign(grad_sum)
    # Under an Explicit mesh the result keeps the table's own sharding.
    out_sharding = None if replicated is None else jax.typeof(table).sharding
    return table.at[unique_ids].set(
        new_rows.astype(table.dtype), mode="drop", out_sharding=out_sharding
    )


def _replicated_sharding(x: jax.Array) -> jax.sharding.NamedSharding | None:
    """Replicated sharding on ``x``'s mesh if that mesh has Explicit axes, else None (auto)."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    axis_types = getattr(mesh, "axis_types", ())
    if not any(t == jax.sharding.AxisType.Explicit for t in axis_types):
        return None
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


# --------------------------------------------------------------------------------------------------
# EMA (reference §5.3)


def ema_update(ema_params: optax.Params, params: optax.Params, rate: float = 0.999) -> optax.Params:
    """Exponential moving average of the parameters: ``rate * ema + (1 - rate) * param``.

    The reference (models/ema.py) sets ``shadow = 0.001 * param + 0.999 * shadow`` after every
    training batch, starting from the parameters themselves (no bias correction), in float32.
    Average only the trainable parameters: the puzzle table and H/L_init are buffers in the
    reference and are not averaged. Jittable; the result keeps the dtypes of ``ema_params``.
    """

    def one(ema, param):
        ema32 = jnp.asarray(ema).astype(jnp.float32)
        mixed = (1.0 - rate) * jnp.asarray(param).astype(jnp.float32) + rate * ema32
        return mixed.astype(jnp.asarray(ema).dtype)

    return jax.tree.map(one, ema_params, params)
