"""The train state and the pure, jittable train and evaluation steps (reference §5).

``train_step(state, batch) -> (state, metrics)``: one supervision step in training mode on the
persistent ACT carry, the loss summed over rows and divided by the GLOBAL batch, gradients of the
parameters and of the gathered puzzle-table rows, AdamATan2 on the parameters, sparse sign-SGD
on the table, and the EMA of the parameters. ``evaluate_batch`` runs a fresh batch for all
``halt_max_steps`` steps (or adaptively) and returns the last step's outputs and metric sums.
Static settings (model, optimizer, schedule) are bound with ``functools.partial`` outside jit;
:func:`build_steps` jits the three steps for one setup on one mesh, with their shardings and the
state donated (``trm_jax.train``, ``scripts/ablate.py`` and ``scripts/bench.py`` all use it).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from trm_jax import sharding as shd
from trm_jax.act import (
    Carry,
    act_forward,
    act_step,
    gather_puzzle_rows,
    initial_carry,
    reset_carry,
    step_loss,
    wants_halt,
)
from trm_jax.config import TrainConfig
from trm_jax.losses import IGNORE_LABEL_ID, binary_cross_entropy_with_logits
from trm_jax.model.trm import TRMModel, init_variables
from trm_jax.optim import adam_atan2, ema_update, lr_at, sparse_sign_sgd

METRIC_KEYS = ("count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps")
LOSS_KEYS = ("lm_loss", "q_halt_loss", "q_continue_loss")


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs, as one pytree."""

    step: jax.Array  # int32 [], optimizer steps taken
    batches: jax.Array  # int32 [], training batches consumed (== step unless pseudocode ACT)
    horizon: jax.Array  # int32 [], the batch where the cosine decay of the learning rate ends
    params: Any
    constants: Any  # H_init / L_init: fixed, never trained
    opt_state: Any
    ema_params: Any
    puzzle_table: jax.Array  # [rows padded to the mesh, puzzle_emb_ndim] (a [n, 1] dummy if none)
    carry: Carry
    rng: jax.Array  # uint32 key data


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static objects the steps close over.

    The learning-rate schedule counts training batches (``TrainState.batches``), as do
    ``total_steps``, the warm-up and the time-budget horizon: with the carry form one batch is one
    optimizer update (the reference); with the pseudocode form the up to N_sup updates of one
    batch share its rate, so the decay ends where the run does.
    """

    model: TRMModel
    tcfg: TrainConfig
    total_steps: int

    def lr(self, step, horizon) -> jax.Array:
        """The parameters' learning rate at ``step`` for a decay ending at ``horizon``."""
        t = self.tcfg
        return lr_at(step, t.lr, t.lr_warmup_steps, horizon, t.lr_min_ratio)

    def puzzle_lr(self, step, horizon) -> jax.Array:
        t = self.tcfg
        return lr_at(step, t.puzzle_emb_lr, t.lr_warmup_steps, horizon, t.lr_min_ratio)

    def tx(self, lr) -> optax.GradientTransformation:
        """AdamATan2 at rate ``lr`` (the state's layout does not depend on it, so ``tx(r).init``
        is the same for every ``r``; its bias correction counts its own updates)."""
        t = self.tcfg
        return adam_atan2(lr, t.beta1, t.beta2, t.weight_decay)


def make_setup(model: TRMModel, tcfg: TrainConfig, total_steps: int) -> Setup:
    """``total_steps`` is the initial decay horizon (the reference's: the whole run)."""
    return Setup(model, tcfg, total_steps)


def dummy_batch(model: TRMModel, batch_size: int) -> dict:
    L = model.cfg.seq_len
    return {
        "inputs": jnp.zeros((batch_size, L), jnp.int32),
        "labels": jnp.zeros((batch_size, L), jnp.int32),
        "puzzle_identifiers": jnp.zeros((batch_size,), jnp.int32),
    }


def init_state(setup: Setup, rng: jax.Array, table_rows: int) -> TrainState:
    """Fresh state: reference initialisers, zero puzzle table, all-halted carry."""
    model = setup.model
    cfg = model.cfg
    k_params, k_train = jax.random.split(rng)
    variables = init_variables(model, k_params)
    params = variables["params"]
    width = max(cfg.puzzle_emb_ndim, 1)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        batches=jnp.zeros((), jnp.int32),
        horizon=jnp.asarray(setup.total_steps, jnp.int32),
        params=params,
        constants=variables["constants"],
        opt_state=setup.tx(setup.tcfg.lr).init(params),
        ema_params=jax.tree.map(jnp.copy, params),
        puzzle_table=_initial_table(setup.tcfg, rng, table_rows, width),
        carry=initial_carry(model, dummy_batch(model, setup.tcfg.global_batch_size)),
        rng=jax.random.key_data(k_train),
    )


def _initial_table(tcfg: TrainConfig, rng, rows: int, width: int) -> jax.Array:
    """Zeros (the reference), or N(0, puzzle_emb_init_std^2) rows with the blank row 0 zero."""
    std = float(tcfg.puzzle_emb_init_std)
    if not std:
        return jnp.zeros((rows, width), jnp.float32)
    # A key of its own, so the parameters' initialisation does not depend on this setting.
    table = std * jax.random.normal(jax.random.fold_in(rng, 0x7AB1E), (rows, width), jnp.float32)
    return table.at[0].set(0.0)


def _sum_metrics(metrics: dict, loss_scaled) -> dict:
    out = {k: metrics[k] for k in METRIC_KEYS}
    for k in LOSS_KEYS:
        if k in metrics:
            out[k] = metrics[k].astype(jnp.float32)
    out["loss"] = loss_scaled.astype(jnp.float32)
    return out


def _update(setup: Setup, state: TrainState, carry: Carry, rng) -> tuple[TrainState, dict]:
    """One optimizer step from an already reset carry."""
    model, tcfg = setup.model, setup.tcfg
    has_table = bool(model.cfg.puzzle_len)
    ids = carry.current_data["puzzle_identifiers"]
    rows = gather_puzzle_rows(model, state.puzzle_table, ids)

    def loss_fn(params, rows):
        v = {"params": params, "constants": state.constants}
        new_carry, out = act_forward(model, v, rows, carry, rng, True)
        loss, metrics, _ = step_loss(model, new_carry, out)
        return loss / tcfg.global_batch_size, (new_carry, metrics)

    frozen = tcfg.freeze_network and has_table
    argnums = 1 if frozen else (0, 1) if has_table else 0
    (loss_scaled, (new_carry, metrics)), grads = jax.value_and_grad(
        loss_fn, argnums=argnums, has_aux=True
    )(state.params, rows)
    if frozen:
        g_params, g_rows = jax.tree.map(jnp.zeros_like, state.params), grads
    else:
        g_params, g_rows = grads if has_table else (grads, None)
    # The schedule's position: this batch, numbered from 1 (== the update with the carry form).
    position = state.batches + 1
    lr = setup.lr(position, state.horizon)
    if frozen:  # only the table's rows learn (trm_jax.adapt --mode embedding)
        params, opt_state = state.params, state.opt_state
    else:
        updates, opt_state = setup.tx(lr).update(g_params, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    table = state.puzzle_table
    if has_table:
        table = sparse_sign_sgd(
            table,
            ids,
            g_rows,
            setup.puzzle_lr(position, state.horizon),
            tcfg.puzzle_emb_weight_decay,
        )
    ema = state.ema_params if frozen else ema_update(state.ema_params, params, tcfg.ema_rate)
    out = _sum_metrics(metrics, loss_scaled)
    out["lr"] = lr
    out["grad_norm"] = optax.tree.norm(g_params)
    out["param_norm"] = optax.tree.norm(params)
    state = state.replace(
        step=step,
        params=params,
        opt_state=opt_state,
        ema_params=ema,
        puzzle_table=table,
        carry=new_carry,
    )
    return state, out


def train_step(setup: Setup, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """The reference's training step: one supervision step per optimizer step.

    The carry persists across calls: only rows that halted take their data from ``batch``.
    """
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    variables = {"params": state.params, "constants": state.constants}
    carry = reset_carry(setup.model, variables, state.carry, batch)
    state, metrics = _update(setup, state, carry, rng)
    return state.replace(batches=state.batches + 1), metrics


def train_step_pseudocode(setup: Setup, state: TrainState, batch: dict):
    """The paper's pseudocode: N_sup optimizer steps on one batch, carry detached in between.

    Every row starts fresh from ``batch``; the loop stops early once every row has halted.
    Metrics are those of the last supervision step taken; ``sup_steps`` counts the updates.
    """
    model = setup.model
    n_sup = model.cfg.halt_max_steps
    variables = {"params": state.params, "constants": state.constants}
    carry = initial_carry(model, batch)
    carry = reset_carry(model, variables, carry, batch)
    state = state.replace(carry=carry)
    base_rng = jax.random.wrap_key_data(state.rng)

    def one(state):
        rng = jax.random.fold_in(base_rng, state.step)
        # Rows that halted stay halted (their data is not replaced inside one batch).
        halted = state.carry.halted
        carry = state.carry.replace(halted=jnp.zeros_like(halted))
        new_state, metrics = _update(setup, state, carry, rng)
        new_carry = new_state.carry.replace(halted=new_state.carry.halted | halted)
        return new_state.replace(carry=new_carry), metrics

    state = state.replace(carry=state.carry.replace(halted=jnp.zeros_like(carry.halted)))
    state, metrics = one(state)

    def body(i, val):
        state, metrics, n = val

        def go(_):
            s, m = one(state)
            return s, m, n + 1

        return jax.lax.cond(jnp.all(state.carry.halted), lambda _: val, go, None)

    state, metrics, n = jax.lax.fori_loop(1, n_sup, body, (state, metrics, jnp.ones((), jnp.int32)))
    metrics = dict(metrics, sup_steps=n)
    # Leave every row halted so the next batch replaces them all.
    state = state.replace(
        carry=state.carry.replace(halted=jnp.ones_like(state.carry.halted)),
        batches=state.batches + 1,
    )
    return state, metrics


def evaluate_batch(
    model: TRMModel,
    params,
    constants,
    puzzle_table,
    batch: dict,
    adaptive: bool = False,
) -> tuple[dict, dict]:
    """Run a fresh batch for ``halt_max_steps`` supervision steps in evaluation mode.

    ``adaptive=False`` is the reference: every row runs all steps and the last step's outputs
    are scored. ``adaptive=True`` freezes a row's outputs at the first step where the training
    halting rule fires (``q_halt > 0``, or ``q_halt > q_continue`` for configs that train the
    Q-continue head, e.g. HRM); its ``steps`` then counts the steps it used.
    Returns (outputs with preds / logits / q_halt_logits of the scored step, metric sums).

    An optional ``batch["scored"]`` (bool [B]) drops the other rows from every sum, q_halt_loss
    included (rows past an evaluation's ``max_examples``); without it every row is summed as in
    the reference (padding rows, whose labels are all ignored, add BCE(q_halt, 1) to q_halt_loss).
    """
    scored_B = batch.get("scored")
    if scored_B is not None:
        labels = jnp.where(scored_B[:, None], batch["labels"], IGNORE_LABEL_ID)
        batch = {k: v for k, v in batch.items() if k != "scored"} | {"labels": labels}
    variables = {"params": params, "constants": constants}
    n = model.cfg.halt_max_steps
    carry = initial_carry(model, batch)
    carry, out, _, _ = act_step(model, variables, puzzle_table, carry, batch)
    B = batch["inputs"].shape[0]

    def halts(o):
        return wants_halt(model.cfg, o["q_halt_logits"], o["q_continue_logits"])

    stopped = jnp.zeros((B,), bool)
    if adaptive:
        stopped = halts(out)
    used = jnp.ones((B,), jnp.int32)

    def body(_, val):
        carry, out, stopped, used = val
        new_carry, new_out, _, _ = act_step(model, variables, puzzle_table, carry, batch)
        keep = stopped if adaptive else jnp.zeros_like(stopped)
        merged = jax.tree.map(
            lambda a, b: jnp.where(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), out, new_out
        )
        used = used + (~keep).astype(jnp.int32)
        if adaptive:
            stopped = stopped | halts(new_out)
        return new_carry, merged, stopped, used

    carry, out, stopped, used = jax.lax.fori_loop(1, n, body, (carry, out, stopped, used))
    # Score the chosen step for every row as if it had just halted.
    scored = carry.replace(halted=jnp.ones((B,), bool), steps=used)
    _, metrics, preds = step_loss(model, scored, out)
    out = dict(out, preds=preds, steps=used)
    sums = {k: metrics[k] for k in METRIC_KEYS}
    for k in ("lm_loss", "q_halt_loss"):
        sums[k] = metrics[k].astype(jnp.float32)
    if scored_B is not None:
        labels = batch["labels"]
        exact_B = jnp.all((preds == labels) | (labels == IGNORE_LABEL_ID), axis=-1)
        bce_B = binary_cross_entropy_with_logits(out["q_halt_logits"], exact_B)
        sums["q_halt_loss"] = jnp.sum(jnp.where(scored_B, bce_B, 0.0)).astype(jnp.float32)
    return out, sums


# ---- the jitted steps on a mesh ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Steps:
    """The jitted steps of one setup on one mesh.

    ``init(key) -> state``; ``train(state, batch) -> (state, metrics)`` with the state donated;
    ``evaluate(params, constants, puzzle_table, batch) -> (outputs, sums)`` (:func:`evaluate_batch`,
    fixed halting). Batches are dicts of global arrays split on ``data`` (see
    :func:`trm_jax.sharding.global_batch`); ``state`` is the shardings of the train state and
    ``abstract`` its shapes (a restore target with :func:`trm_jax.checkpoint.abstract_like`).
    """

    init: Callable
    train: Callable
    evaluate: Callable
    state: TrainState
    abstract: TrainState
    table_rows: int


def build_steps(setup: Setup, mesh) -> Steps:
    """Jit init, train (carry or pseudocode form, from ``setup.tcfg``) and eval for ``mesh``."""
    cfg = setup.model.cfg
    table_rows = shd.padded_rows(max(cfg.num_puzzle_identifiers, 1), mesh)
    init_fn = functools.partial(init_state, setup, table_rows=table_rows)
    abstract = jax.eval_shape(init_fn, jax.random.key(0))
    state_sh = shd.state_shardings(abstract, mesh)
    rep, batch = shd.replicated(mesh), shd.batch_sharding(mesh)
    step_fn = train_step if setup.tcfg.deep_supervision == "carry" else train_step_pseudocode
    train = jax.jit(
        functools.partial(step_fn, setup),
        in_shardings=(state_sh, batch),
        out_shardings=(state_sh, rep),
        donate_argnums=0,
    )
    evaluate = jax.jit(
        functools.partial(evaluate_batch, setup.model),
        in_shardings=(state_sh.params, state_sh.constants, state_sh.puzzle_table, batch),
        out_shardings=(batch, rep),
    )
    init = jax.jit(init_fn, out_shardings=state_sh)
    return Steps(init, train, evaluate, state_sh, abstract, table_rows)
