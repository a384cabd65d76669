"""The test-time rollout: K trajectories of B puzzles as one batch, early halting.

:func:`rollout_batch` runs the K trajectories of B puzzles as one batch of K*B rows (row
``k*B + b`` is trajectory k of puzzle b) under ``lax.while_loop``; the number of supervision steps
N is a traced argument, so the compiled program is the same for every N. Each trajectory draws
its noise (``InferenceSettings.sigma``, at the start of every step) from its own key,
``fold_in(fold_in(fold_in(key(seed), puzzle index), k), step)``, so the answers depend on the seed
and the puzzle, not on the batch a puzzle lands in. Nothing of size N x K x B x L is kept: every
step updates, per trajectory, the last answer, the answer of highest q_halt and the answer of the
first step whose halting rule (:func:`trm_jax.act.wants_halt`) fires; the four selection rules of
:mod:`trm_jax.test_time` are read from those at the end (one rollout answers for every rule;
``select`` only decides whether a puzzle may stop early: with ``first_halt`` a batch stops when
all its puzzles have halted).

:func:`solver` is the pure ``(inputs, ids) -> (answer, q_halt, steps)`` function that
``trm_jax.export`` serializes. Many puzzles (a plain loop over fixed batches, or continuous
batching) are :mod:`trm_jax.batching`'s ``solve_many``, built on this module's state and step
body.

Shape letters: K samples, B puzzles, R = K*B rows, L seq_len, S = P + L, D hidden.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp

from trm_jax import test_time as tt
from trm_jax.act import Carry, act_forward, gather_puzzle_rows, wants_halt
from trm_jax.model.trm import TRMModel

__all__ = [
    "lower_rollout",
    "rollout_batch",
    "solver",
]

# --------------------------------------------------------------------------------------------
# The rollout: online tracking, one step body, while loops


@flax.struct.dataclass
class _Track:
    """Per trajectory [K, B]: the last, best-q and first-halt answers seen so far."""

    last_pred: jax.Array
    last_q: jax.Array
    last_step: jax.Array
    best_pred: jax.Array
    best_q: jax.Array
    best_step: jax.Array
    halt_pred: jax.Array
    halt_q: jax.Array
    halt_step: jax.Array
    halted: jax.Array


def _fresh_track(K: int, B: int, L: int) -> _Track:
    pred = jnp.zeros((K, B, L), jnp.int32)
    zero_q = jnp.zeros((K, B), jnp.float32)
    zero_step = jnp.zeros((K, B), jnp.int32)
    return _Track(
        last_pred=pred,
        last_q=zero_q,
        last_step=zero_step,
        best_pred=pred,
        best_q=jnp.full((K, B), -jnp.inf, jnp.float32),
        best_step=zero_step,
        halt_pred=pred,
        halt_q=zero_q,
        halt_step=zero_step,
        halted=jnp.zeros((K, B), bool),
    )


def _update_track(tr: _Track, pred_KxBxL, q_KxB, halt_KxB, step_B, live_B) -> _Track:
    live = jnp.broadcast_to(live_B[None], q_KxB.shape)
    step = jnp.broadcast_to(step_B[None], q_KxB.shape)

    def put(mask, new, old):
        return jnp.where(mask.reshape(mask.shape + (1,) * (old.ndim - mask.ndim)), new, old)

    better = live & (q_KxB > tr.best_q)  # strict: ties keep the earlier step
    first = live & halt_KxB & ~tr.halted
    return _Track(
        last_pred=put(live, pred_KxBxL, tr.last_pred),
        last_q=put(live, q_KxB, tr.last_q),
        last_step=put(live, step, tr.last_step),
        best_pred=put(better, pred_KxBxL, tr.best_pred),
        best_q=put(better, q_KxB, tr.best_q),
        best_step=put(better, step, tr.best_step),
        halt_pred=put(first, pred_KxBxL, tr.halt_pred),
        halt_q=put(first, q_KxB, tr.halt_q),
        halt_step=put(first, step, tr.halt_step),
        halted=tr.halted | first,
    )


def _per_trajectory(rule: str, tr: _Track) -> tt.PerTrajectory:
    none = jnp.zeros_like(tr.halted)
    if rule in ("last", "vote"):
        return tt.PerTrajectory(tr.last_pred, tr.last_q, tr.last_step, none)
    if rule == "q_halt":
        return tt.PerTrajectory(tr.best_pred, tr.best_q, tr.best_step, none)
    h = tr.halted
    return tt.PerTrajectory(
        jnp.where(h[..., None], tr.halt_pred, tr.last_pred),
        jnp.where(h, tr.halt_q, tr.last_q),
        jnp.where(h, tr.halt_step, tr.last_step),
        h,
    )


def _finish(tr: _Track) -> dict:
    """For every rule: the puzzle's tt.Choice and each trajectory's answer and q (for ArcVoter)."""
    out = {}
    for rule in tt.SELECT_RULES:
        per = _per_trajectory(rule, tr)
        out[rule] = (tt.reduce_trajectories(rule, per), per.pred, per.q)
    return out


@flax.struct.dataclass
class _State:
    """B puzzle slots of K rows each: latents, data, steps taken, done/active flags, tracking."""

    z: tuple  # latents, each [R, S, D]
    inputs: jax.Array  # int32 [B, L]
    ids: jax.Array  # int32 [B]
    index: jax.Array  # int32 [B], the puzzle's index in its dataset (the noise key)
    t: jax.Array  # int32 [B], steps taken
    done: jax.Array  # bool [B]
    active: jax.Array  # bool [B], the slot holds a puzzle
    iters: jax.Array  # int32 [], loop iterations (steps computed for all R rows)
    track: _Track


def _init_state(model: TRMModel, variables, K: int, inputs, ids, index, active) -> _State:
    B, L = inputs.shape
    return _State(
        z=model.apply(variables, K * B, method=TRMModel.initial_latents),
        inputs=inputs.astype(jnp.int32),
        ids=ids.astype(jnp.int32),
        index=index.astype(jnp.int32),
        t=jnp.zeros((B,), jnp.int32),
        done=jnp.zeros((B,), bool),
        active=active,
        iters=jnp.zeros((), jnp.int32),
        track=_fresh_track(K, B, L),
    )


def _noise(key, index_B, t_B, K: int, shapes) -> tuple:
    """Standard normal float32 noise per row and latent, keyed by (puzzle, trajectory, step)."""
    B = index_B.shape[0]
    k_R = jnp.repeat(jnp.arange(K, dtype=jnp.int32), B)
    idx_R, t_R = jnp.tile(index_B, K), jnp.tile(t_B, K)

    def one(i, k, t):
        row = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, i), k), t)
        keys = jax.random.split(row, len(shapes))
        return tuple(jax.random.normal(kk, s[1:], jnp.float32) for kk, s in zip(keys, shapes))

    return jax.vmap(one)(idx_R, k_R, t_R)


def _body(model: TRMModel, K: int, noisy: bool, stops_early: bool, variables, table, n, sigma, key):
    """One supervision step for every live slot (the same body for every loop below)."""
    cfg = model.cfg

    def body(s: _State) -> _State:
        B = s.inputs.shape[0]
        z = s.z
        if noisy:
            eps = _noise(key, s.index, s.t, K, [t.shape for t in z])
            z = tuple(t + (sigma * e).astype(t.dtype) for t, e in zip(z, eps))
        inputs_R = jnp.tile(s.inputs, (K, 1))
        ids_R = jnp.tile(s.ids, K)
        R = inputs_R.shape[0]
        carry = Carry(
            z=z,
            steps=jnp.zeros((R,), jnp.int32),
            halted=jnp.zeros((R,), bool),
            current_data={"inputs": inputs_R, "labels": inputs_R, "puzzle_identifiers": ids_R},
        )
        rows = gather_puzzle_rows(model, table, ids_R)
        new_carry, out = act_forward(model, variables, rows, carry, None, False)
        pred = jnp.argmax(out["logits"], axis=-1).astype(jnp.int32).reshape(K, B, -1)
        q = out["q_halt_logits"].reshape(K, B)
        halt = wants_halt(cfg, out["q_halt_logits"], out["q_continue_logits"]).reshape(K, B)
        live = s.active & ~s.done
        t = s.t + live.astype(jnp.int32)
        track = _update_track(s.track, pred, q, halt, t, live)
        finished = t >= n
        if stops_early:
            finished = finished | track.halted.any(axis=0)
        live_R = jnp.tile(live, K)[:, None, None]
        return s.replace(
            z=tuple(jnp.where(live_R, new, old) for new, old in zip(new_carry.z, s.z)),
            t=t,
            done=s.done | (live & finished),
            iters=s.iters + 1,
            track=track,
        )

    return body


def _rollout(model, K, noisy, stops_early, variables, table, inputs, ids, index, n, sigma, seed):
    B = inputs.shape[0]
    state = _init_state(model, variables, K, inputs, ids, index, jnp.ones((B,), bool))
    body = _body(model, K, noisy, stops_early, variables, table, n, sigma, jax.random.key(seed))
    state = jax.lax.while_loop(lambda s: ~jnp.all(s.done), body, state)
    return _finish(state.track), state.t, state.iters


@functools.cache
def _jitted_rollout(model: TRMModel, K: int, noisy: bool, stops_early: bool):
    return jax.jit(functools.partial(_rollout, model, K, noisy, stops_early))


def rollout_batch(
    model: TRMModel,
    variables,
    puzzle_table,
    inputs_BxL,
    ids_B,
    settings: tt.InferenceSettings | None = None,
    index_B=None,
) -> tuple[dict, jax.Array, jax.Array]:
    """Run B puzzles (K trajectories each) for N steps, or until all have halted with
    ``first_halt``; jitted, one program for every N.

    Returns ``(results, steps_B, iterations)``: ``results[rule] = (tt.Choice, trajectory answers
    [K, B, L], trajectory q_halt [K, B])`` for every rule of :data:`tt.SELECT_RULES`; the steps
    each puzzle ran; the loop's iterations (steps computed for all K*B rows). ``index_B`` is
    each puzzle's index in its dataset, which keys its noise (default ``arange(B)``).
    """
    settings = settings or tt.InferenceSettings()
    inputs = jnp.asarray(inputs_BxL, jnp.int32)
    B = inputs.shape[0]
    index = jnp.arange(B, dtype=jnp.int32) if index_B is None else jnp.asarray(index_B, jnp.int32)
    fn = _jitted_rollout(model, settings.samples, settings.sigma > 0, settings.stops_early)
    return fn(
        variables,
        puzzle_table,
        inputs,
        jnp.asarray(ids_B, jnp.int32),
        index,
        jnp.asarray(settings.num_steps(model.cfg), jnp.int32),
        jnp.asarray(settings.sigma, jnp.float32),
        jnp.asarray(settings.seed, jnp.uint32),
    )


def solver(model: TRMModel, variables, puzzle_table, settings: tt.InferenceSettings):
    """A pure function ``(inputs [B, L], ids [B]) -> (answer [B, L], q_halt [B], steps [B])``
    with the weights and settings bound (``settings.select`` picks the answer; puzzle b's noise
    is keyed by index b). Model-only: ``verify`` needs a host-side check and is refused."""
    if settings.verify:
        raise tt.SettingsError("verify runs a rule check outside the model; it cannot be compiled.")
    K, noisy, early = settings.samples, settings.sigma > 0, settings.stops_early
    n = settings.num_steps(model.cfg)

    def solve(inputs_BxL, ids_B):
        B = inputs_BxL.shape[0]
        results, steps, _ = _rollout(
            model,
            K,
            noisy,
            early,
            variables,
            puzzle_table,
            inputs_BxL.astype(jnp.int32),
            ids_B.astype(jnp.int32),
            jnp.arange(B, dtype=jnp.int32),
            jnp.asarray(n, jnp.int32),
            jnp.asarray(settings.sigma, jnp.float32),
            jnp.asarray(settings.seed, jnp.uint32),
        )
        choice = results[settings.select][0]
        return choice.answer, choice.q_halt, steps

    return solve


def lower_rollout(model: TRMModel, variables, puzzle_table, batch_size: int, settings):
    """The lowered rollout for ``batch_size`` puzzles (``.as_text()``: StableHLO)."""
    L = model.cfg.seq_len
    fn = _jitted_rollout(model, settings.samples, settings.sigma > 0, settings.stops_early)
    return fn.lower(
        variables,
        puzzle_table,
        jnp.zeros((batch_size, L), jnp.int32),
        jnp.zeros((batch_size,), jnp.int32),
        jnp.arange(batch_size, dtype=jnp.int32),
        jnp.asarray(settings.num_steps(model.cfg), jnp.int32),
        jnp.asarray(settings.sigma, jnp.float32),
        jnp.asarray(settings.seed, jnp.uint32),
    )
