"""The ACT carry and one supervision step (reference §3.8).

A supervision step (``N_sup`` = ``halt_max_steps`` of them per puzzle) is::

    carry = reset_carry(...)        # halted rows restart from the init latents with new data
    rows  = table[carry ids]        # puzzle-embedding rows; training differentiates these only
    carry, out = act_forward(...)   # the latent recursion, heads, step count and halting

:func:`act_step` chains the three for evaluation and notebooks. In training the carry persists
across optimizer steps ("continuous batching"): a row keeps its example until it halts.

Shape letters: B batch, L grid length, S = P + L, D hidden, E puzzle_emb_ndim, V vocabulary.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from trm_jax.losses import act_loss
from trm_jax.model.trm import TRMModel, compute_dtype, inner_forward

DATA_KEYS = ("inputs", "labels", "puzzle_identifiers")


@flax.struct.dataclass
class Carry:
    """ACT state: latents, per-row step counts and halting flags, and the rows' current data."""

    z: tuple[jax.Array, ...]
    steps: jax.Array  # int32 [B]
    halted: jax.Array  # bool [B]
    current_data: dict[str, jax.Array]


def initial_carry(model: TRMModel, batch: dict) -> Carry:
    """A carry whose rows are all halted, so the first step loads every row from ``batch``."""
    cfg = model.cfg
    B = batch["inputs"].shape[0]
    shape = (B, cfg.total_len, cfg.hidden_size)
    z = tuple(jnp.zeros(shape, compute_dtype(cfg)) for _ in cfg.latent_names)
    return Carry(
        z=z,
        steps=jnp.zeros((B,), jnp.int32),
        halted=jnp.ones((B,), bool),
        current_data={k: jnp.zeros_like(batch[k]) for k in DATA_KEYS},
    )


def reset_carry(model: TRMModel, variables, carry: Carry, batch: dict) -> Carry:
    """Restart halted rows: init latents, steps 0, and that row of ``batch`` as its data."""
    halted_B = carry.halted
    init = model.apply(variables, carry.steps.shape[0], method=TRMModel.initial_latents)
    z = tuple(jnp.where(halted_B[:, None, None], i, t) for i, t in zip(init, carry.z))
    data = {}
    for k in DATA_KEYS:
        new, old = batch[k], carry.current_data[k]
        mask = halted_B.reshape((-1,) + (1,) * (new.ndim - 1))
        data[k] = jnp.where(mask, new, old)
    return Carry(
        z=z,
        steps=jnp.where(halted_B, 0, carry.steps),
        halted=halted_B,
        current_data=data,
    )


def gather_puzzle_rows(model: TRMModel, puzzle_table, ids_B: jax.Array):
    """The rows of the puzzle-embedding table for ``ids`` (None if the model has no table)."""
    if not model.cfg.puzzle_len:
        return None
    return jnp.take(puzzle_table, ids_B, axis=0)


def act_forward(
    model: TRMModel,
    variables,
    puzzle_rows_BxE,
    carry: Carry,
    rng: jax.Array | None,
    training: bool,
):
    """Run one supervision step on a carry that was already reset.

    Returns ``(new_carry, outputs)`` with outputs ``logits`` [B, L, V], ``q_halt_logits``,
    ``q_continue_logits`` [B] (float32) and, when the config builds it in training,
    ``target_q_continue`` [B]. The new carry's latents are gradient-stopped.
    """
    cfg = model.cfg
    data = carry.current_data
    x_BxSxD = model.apply(variables, data["inputs"], puzzle_rows_BxE, method=TRMModel.embed)
    z = inner_forward(model, variables, carry.z, x_BxSxD)
    logits_BxLxV, q_halt_B, q_cont_B = model.apply(variables, z[0], method=TRMModel.heads)

    steps_B = carry.steps + 1
    is_last_B = steps_B >= cfg.halt_max_steps
    halted_B = is_last_B
    outputs = {
        "logits": logits_BxLxV,
        "q_halt_logits": q_halt_B,
        "q_continue_logits": q_cont_B,
    }
    if training and cfg.halt_max_steps > 1:
        q_halt = jax.lax.stop_gradient(q_halt_B)
        q_cont = jax.lax.stop_gradient(q_cont_B)
        halted_B = halted_B | wants_halt(cfg, q_halt, q_cont)
        if cfg.halt_exploration_prob > 0:
            k_explore, k_min = jax.random.split(rng)
            B = steps_B.shape[0]
            explore_B = jax.random.uniform(k_explore, (B,)) < cfg.halt_exploration_prob
            min_halt_B = jax.random.randint(k_min, (B,), 2, cfg.halt_max_steps + 1)
            halted_B = halted_B & (steps_B >= jnp.where(explore_B, min_halt_B, 0))
        if cfg.uses_q_continue_target:
            # Bootstrapped target from a second, gradient-free pass from the new latents.
            z_next = inner_forward(model, variables, z, jax.lax.stop_gradient(x_BxSxD))
            _, nq_halt, nq_cont = model.apply(variables, z_next[0], method=TRMModel.heads)
            target = jnp.where(is_last_B, nq_halt, jnp.maximum(nq_halt, nq_cont))
            outputs["target_q_continue"] = jax.lax.stop_gradient(jax.nn.sigmoid(target))

    new_carry = Carry(
        z=tuple(jax.lax.stop_gradient(t) for t in z),
        steps=steps_B,
        halted=halted_B,
        current_data=data,
    )
    return new_carry, outputs


def wants_halt(cfg, q_halt_B: jax.Array, q_continue_B: jax.Array) -> jax.Array:
    """The halting rule: q_halt > 0, or q_halt > q_continue for configs that train Q-continue."""
    if cfg.halts_on_q_halt_only:
        return q_halt_B > 0
    return q_halt_B > q_continue_B


def step_loss(model: TRMModel, new_carry: Carry, outputs: dict):
    """The ACT loss head on one step's outputs: (total loss summed over rows, metrics, preds)."""
    return act_loss(
        outputs["logits"],
        new_carry.current_data["labels"],
        outputs["q_halt_logits"],
        outputs["q_continue_logits"],
        new_carry.halted,
        new_carry.steps,
        outputs.get("target_q_continue"),
        loss_type=model.cfg.loss_type,
    )


def act_step(
    model: TRMModel,
    variables,
    puzzle_table,
    carry: Carry,
    batch: dict,
    rng: jax.Array | None = None,
    training: bool = False,
):
    """One full supervision step: reset halted rows, gather puzzle rows, forward, loss head.

    Pure function of (variables, puzzle table, carry, batch, rng); returns
    ``(new_carry, outputs, loss, metrics)`` where outputs also holds ``preds``.
    """
    carry = reset_carry(model, variables, carry, batch)
    rows = gather_puzzle_rows(model, puzzle_table, carry.current_data["puzzle_identifiers"])
    new_carry, outputs = act_forward(model, variables, rows, carry, rng, training)
    loss, metrics, preds = step_loss(model, new_carry, outputs)
    outputs = dict(outputs, preds=preds)
    return new_carry, outputs, loss, metrics
