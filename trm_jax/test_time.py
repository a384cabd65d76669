"""Thinking longer at test time: inference settings, the rollout, selection rules, early halting.

One :class:`InferenceSettings` describes how a trained model answers: how many supervision steps it
runs (``steps`` N, any number, fewer or more than ``halt_max_steps``), how many trajectories per
puzzle (``samples`` K), how much Gaussian noise enters them and where (``sigma``, ``noise_at``),
which (step, trajectory) gives the answer (``select``), whether a task's rule check may pick among
the trajectories (``verify``) and the ``seed``. The defaults are the reference: N =
``halt_max_steps``, K = 1, no noise, the last step's answer.

The rollout (:func:`rollout_batch`) runs the K trajectories of B puzzles as one batch of K*B rows
(row ``k*B + b`` is trajectory k of puzzle b) under ``lax.while_loop``; N is a traced argument, so
the compiled program is the same for every N. Each trajectory draws its noise from its own key,
``fold_in(fold_in(fold_in(key(seed), puzzle index), k), step)``, so the answers depend on the seed
and the puzzle, not on the batch a puzzle lands in. Nothing of size N x K x B x L is kept: every
step updates, per trajectory, the last answer, the answer of highest q_halt and the answer of the
first step whose halting rule fires, and all four selection rules are read from those at the end
(one rollout answers for every rule; ``select`` only decides when a puzzle may stop early).

Selection rules, as pure functions of the full arrays (``select_last`` ...; the specification the
online tracking is tested against):

* ``last``: the last step of the first trajectory (the reference, with K = 1).
* ``q_halt``: the (step, trajectory) of highest q_halt; ties go to the earlier step, then the
  lower trajectory.
* ``vote``: the last answer most trajectories end on; ties by the mean q_halt of its voters,
  then the lowest trajectory.
* ``first_halt``: the first step at which some trajectory's halting rule fires
  (:func:`trm_jax.act.wants_halt`: q_halt > 0 for TRM), the lowest such trajectory; if none
  ever halts, ``last``. With this rule a puzzle stops as soon as it is decided: a batch stops
  when all its puzzles have (:func:`rollout_batch`), and :func:`solve_many` with
  ``continuous=True`` replaces a finished puzzle by the next one (the reference's training
  carry, used for inference).

``verify`` (Sudoku, maze) keeps the first trajectory, in order, whose answer passes the task's
rule check (a callable ``check(inputs_L, answer_L) -> bool``); it uses knowledge outside the
model, so it is returned apart (``Solutions.verified``), never as a model-only answer.

For ARC, every trajectory votes: ``Solutions.trajectories[rule]`` holds each trajectory's answer
and q_halt, to be added to :class:`trm_jax.arc_scoring.ArcVoter` one trajectory at a time.

Shape letters: N steps, K samples, B puzzles, R = K*B rows, L seq_len, S = P + L, D hidden.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from trm_jax.act import Carry, act_forward, gather_puzzle_rows, wants_halt
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel

__all__ = [
    "NOISE_PLACES",
    "SELECT_RULES",
    "Choice",
    "InferenceSettings",
    "SettingsError",
    "Solutions",
    "rollout_batch",
    "select",
    "select_first_halt",
    "select_last",
    "select_q_halt",
    "select_vote",
    "add_settings_arguments",
    "answer_check",
    "settings_from_args",
    "solve_many",
    "solver",
    "verify_choice",
]

SELECT_RULES = ("last", "q_halt", "vote", "first_halt")
# Where the noise enters: the latents at the start of each supervision step (before the step's
# recursion; the first step's init latents included).
NOISE_PLACES = ("step_start",)
ANSWER_CHECK_TASKS = ("sudoku", "maze")


class SettingsError(ValueError):
    """Inference settings that cannot work (one sentence)."""


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """How a trained model answers at test time; the defaults are the reference's evaluation.

    ``steps``: supervision steps N (None: the model's ``halt_max_steps``). ``samples``: K
    trajectories per puzzle. ``sigma``: standard deviation of the Gaussian noise added to every
    latent at ``noise_at`` (see :data:`NOISE_PLACES`). ``select``: one of :data:`SELECT_RULES`.
    ``verify``: pick the first trajectory whose answer passes the task's check (Sudoku, maze).
    ``seed``: the noise's seed.
    """

    steps: int | None = None
    samples: int = 1
    sigma: float = 0.0
    noise_at: str = "step_start"
    select: str = "last"
    verify: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.steps is not None and (not _is_int(self.steps) or self.steps < 1):
            raise SettingsError(f"steps must be an integer >= 1, got {self.steps!r}.")
        if not _is_int(self.samples) or self.samples < 1:
            raise SettingsError(f"samples must be an integer >= 1, got {self.samples!r}.")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)):
            raise SettingsError(f"sigma must be a number >= 0, got {self.sigma!r}.")
        if not math.isfinite(self.sigma) or self.sigma < 0:
            raise SettingsError(f"sigma must be a finite number >= 0, got {self.sigma!r}.")
        if self.noise_at not in NOISE_PLACES:
            raise SettingsError(f"noise_at must be one of {NOISE_PLACES}, got {self.noise_at!r}.")
        if self.select not in SELECT_RULES:
            raise SettingsError(f"select must be one of {SELECT_RULES}, got {self.select!r}.")
        if not isinstance(self.verify, bool):
            raise SettingsError(f"verify must be True or False, got {self.verify!r}.")
        if not _is_int(self.seed):
            raise SettingsError(f"seed must be an integer, got {self.seed!r}.")

    def num_steps(self, cfg: ModelConfig) -> int:
        """N: ``steps``, or the model's ``halt_max_steps`` when unset."""
        return int(self.steps) if self.steps is not None else int(cfg.halt_max_steps)

    @property
    def stops_early(self) -> bool:
        """Whether a puzzle may stop before N steps (its answer is decided when it halts)."""
        return self.select == "first_halt"

    def for_task(self, task: str | None) -> InferenceSettings:
        """These settings, after checking that they fit ``task`` (``verify`` needs a rule check)."""
        if self.verify and task not in ANSWER_CHECK_TASKS:
            raise SettingsError(
                f"verify needs a task with a rule check (Sudoku or maze), not {task or 'unknown'}."
            )
        return self

    def label(self, cfg: ModelConfig | None = None) -> str:
        """A short name: ``q_halt@16 K=4 sigma=0.1`` (the steps as given, or N if ``cfg``)."""
        n = self.num_steps(cfg) if cfg is not None else (self.steps or "N_sup")
        text = f"{self.select}@{n}"
        if self.samples > 1:
            text += f" K={self.samples}"
        if self.sigma > 0:
            text += f" sigma={self.sigma:g}"
        return text + (" +verify" if self.verify else "")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of :class:`InferenceSettings` (``--steps`` ... ``--seed``)."""
    g = parser.add_argument_group("test-time compute")
    g.add_argument("--steps", type=int, default=None, help="supervision steps (default N_sup)")
    g.add_argument("--samples", type=int, default=1, help="trajectories per puzzle")
    g.add_argument("--sigma", type=float, default=0.0, help="latent noise standard deviation")
    g.add_argument("--noise-at", default="step_start", help=f"where noise enters: {NOISE_PLACES}")
    g.add_argument("--select", default="last", help=f"answer selection: {SELECT_RULES}")
    g.add_argument(
        "--verify", action="store_true", help="pick a trajectory that passes the rule check"
    )
    g.add_argument("--seed", type=int, default=0, help="noise seed")


def settings_from_args(args: argparse.Namespace) -> InferenceSettings:
    """The settings of :func:`add_settings_arguments`; raises SettingsError (one sentence)."""
    return InferenceSettings(
        steps=args.steps,
        samples=args.samples,
        sigma=args.sigma,
        noise_at=args.noise_at,
        select=args.select,
        verify=args.verify,
        seed=args.seed,
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# Selection rules: per-trajectory reduction over steps, then across trajectories


class Choice(NamedTuple):
    """The selected answer per puzzle: ``answer`` [B, L], ``q_halt`` [B], ``step`` [B] (1-based)
    and ``trajectory`` [B]."""

    answer: Any
    q_halt: Any
    step: Any
    trajectory: Any


class _PerTrajectory(NamedTuple):
    """One answer per trajectory: pred [K, B, L], q [K, B], step [K, B], halted [K, B]."""

    pred: Any
    q: Any
    step: Any
    halted: Any


def _take(a_NxKxB, idx_KxB):
    return jnp.take_along_axis(a_NxKxB, idx_KxB[None], axis=0)[0]


def _steps_reduce(rule: str, preds_NxKxBxL, q_NxKxB, halts_NxKxB) -> _PerTrajectory:
    """Each trajectory's answer under ``rule`` from its full history (the specification)."""
    preds, q = jnp.asarray(preds_NxKxBxL), jnp.asarray(q_NxKxB)
    N = q.shape[0]
    last = jnp.full(q.shape[1:], N - 1, jnp.int32)
    halted = jnp.zeros(q.shape[1:], bool)
    if rule in ("last", "vote"):
        idx = last
    elif rule == "q_halt":
        idx = jnp.argmax(q, axis=0).astype(jnp.int32)  # first maximum: the earlier step
    else:  # first_halt
        h = jnp.asarray(halts_NxKxB, bool)
        halted = h.any(axis=0)
        idx = jnp.where(halted, jnp.argmax(h, axis=0), last).astype(jnp.int32)
    pred = jnp.take_along_axis(preds, idx[None, ..., None], axis=0)[0]
    return _PerTrajectory(pred, _take(q, idx), idx + 1, halted)


def _first_true(mask_KxB):
    """Index of the first True along K (0 if none)."""
    return jnp.argmax(mask_KxB, axis=0).astype(jnp.int32)


def _trajectories_reduce(rule: str, t: _PerTrajectory) -> Choice:
    """One answer per puzzle from the trajectories' answers (shared by the specification and
    the online rollout)."""
    pred, q, step = jnp.asarray(t.pred), jnp.asarray(t.q), jnp.asarray(t.step)
    if rule == "last":
        k = jnp.zeros(q.shape[1:], jnp.int32)
    elif rule == "q_halt":
        top = q == q.max(axis=0)
        earliest = jnp.where(top, step, jnp.iinfo(jnp.int32).max).min(axis=0)
        k = _first_true(top & (step == earliest))
    elif rule == "first_halt":
        halted = jnp.asarray(t.halted, bool)
        earliest = jnp.where(halted, step, jnp.iinfo(jnp.int32).max).min(axis=0)
        k = jnp.where(halted.any(axis=0), _first_true(halted & (step == earliest)), 0)
    else:  # vote
        same_KxKxB = jnp.all(pred[:, None] == pred[None, :], axis=-1)
        votes_KxB = same_KxKxB.sum(axis=1)
        mean_q_KxB = jnp.where(same_KxKxB, q[None, :], 0.0).sum(axis=1) / votes_KxB
        most = votes_KxB == votes_KxB.max(axis=0)
        best_q = jnp.where(most, mean_q_KxB, -jnp.inf).max(axis=0)
        k = _first_true(most & (mean_q_KxB == best_q))
    k = k.astype(jnp.int32)
    answer = jnp.take_along_axis(pred, k[None, :, None], axis=0)[0]
    return Choice(answer, _take(q, k), _take(step, k), k)


def select(rule: str, preds_NxKxBxL, q_halt_NxKxB, halts_NxKxB=None) -> Choice:
    """The answer per puzzle under ``rule`` from every step's predictions and q_halt.

    ``preds`` [N, K, B, L], ``q_halt`` [N, K, B]; ``halts`` [N, K, B] is where the halting rule
    fires (default ``q_halt > 0``, the TRM rule; only ``first_halt`` reads it).
    """
    if rule not in SELECT_RULES:
        raise SettingsError(f"select must be one of {SELECT_RULES}, got {rule!r}.")
    q = jnp.asarray(q_halt_NxKxB, jnp.float32)
    halts = q > 0 if halts_NxKxB is None else halts_NxKxB
    return _trajectories_reduce(rule, _steps_reduce(rule, preds_NxKxBxL, q, halts))


def select_last(preds_NxKxBxL, q_halt_NxKxB) -> Choice:
    """The reference: the last step of the first trajectory."""
    return select("last", preds_NxKxBxL, q_halt_NxKxB)


def select_q_halt(preds_NxKxBxL, q_halt_NxKxB) -> Choice:
    """The (step, trajectory) with the highest q_halt; ties: earlier step, then lower trajectory."""
    return select("q_halt", preds_NxKxBxL, q_halt_NxKxB)


def select_vote(preds_NxKxBxL, q_halt_NxKxB) -> Choice:
    """The last answer most trajectories end on; ties by the mean last q_halt of its voters,
    then the lowest trajectory. ``step`` is N."""
    return select("vote", preds_NxKxBxL, q_halt_NxKxB)


def select_first_halt(preds_NxKxBxL, q_halt_NxKxB, halts_NxKxB=None) -> Choice:
    """The first step at which some trajectory halts (``halts``, default q_halt > 0), the lowest
    such trajectory; if no trajectory ever halts, falls back to ``last``."""
    return select("first_halt", preds_NxKxBxL, q_halt_NxKxB, halts_NxKxB)


def answer_check(task: str | None) -> Callable[[np.ndarray, np.ndarray], bool]:
    """The rule check ``check(inputs_L, answer_L) -> bool`` of a task's tokens: Sudoku, a valid
    grid that keeps the givens; maze, a shortest S-G path. (To be taken from ``trm_jax.tasks``
    once it exists.) Raises SettingsError for a task without one (ARC)."""
    from trm_jax import inference  # lazy: inference will import this module

    if task == "sudoku":

        def check(inputs_L, answer_L):
            puzzle = np.asarray(inputs_L, np.int64).reshape(9, 9) - 1  # blank 1 -> 0
            answer = np.asarray(answer_L, np.int64).reshape(9, 9) - 1
            return inference.sudoku_is_solution(puzzle, answer)

        return check
    if task == "maze":
        chars = np.array(["?"] + list("# SGo"))

        def check(inputs_L, answer_L):
            side = math.isqrt(np.asarray(inputs_L).size)
            q = chars[np.clip(np.asarray(inputs_L), 0, 5)].reshape(side, side)
            a = chars[np.clip(np.asarray(answer_L), 0, 5)].reshape(side, side)
            return inference.maze_answer_report(q, a)[0]

        return check
    raise SettingsError(f"verify needs a task with a rule check (Sudoku or maze), not {task}.")


def verify_choice(
    inputs_BxL: np.ndarray,
    trajectories_KxBxL: np.ndarray,
    fallback_BxL: np.ndarray,
    check: Callable[[np.ndarray, np.ndarray], bool],
) -> tuple[np.ndarray, np.ndarray]:
    """The first trajectory (in order) whose answer passes ``check(inputs_L, answer_L)``, else
    ``fallback``. Returns ``(answers [B, L], trajectory [B], -1 where none passed)``."""
    traj = np.asarray(trajectories_KxBxL)
    out = np.array(fallback_BxL, copy=True)
    which = np.full(out.shape[0], -1, np.int32)
    for b in range(out.shape[0]):
        for k in range(traj.shape[0]):
            if check(np.asarray(inputs_BxL[b]), traj[k, b]):
                out[b], which[b] = traj[k, b], k
                break
    return out, which


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


def _per_trajectory(rule: str, tr: _Track) -> _PerTrajectory:
    none = jnp.zeros_like(tr.halted)
    if rule in ("last", "vote"):
        return _PerTrajectory(tr.last_pred, tr.last_q, tr.last_step, none)
    if rule == "q_halt":
        return _PerTrajectory(tr.best_pred, tr.best_q, tr.best_step, none)
    h = tr.halted
    return _PerTrajectory(
        jnp.where(h[..., None], tr.halt_pred, tr.last_pred),
        jnp.where(h, tr.halt_q, tr.last_q),
        jnp.where(h, tr.halt_step, tr.last_step),
        h,
    )


def _finish(tr: _Track) -> dict:
    """For every rule: the puzzle's Choice and each trajectory's answer and q (for ArcVoter)."""
    out = {}
    for rule in SELECT_RULES:
        per = _per_trajectory(rule, tr)
        out[rule] = (_trajectories_reduce(rule, per), per.pred, per.q)
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
    settings: InferenceSettings = InferenceSettings(),
    index_B=None,
) -> tuple[dict, jax.Array, jax.Array]:
    """Run B puzzles (K trajectories each) for N steps, or until all have halted with
    ``first_halt``; jitted, one program for every N.

    Returns ``(results, steps_B, iterations)``: ``results[rule] = (Choice, trajectory answers
    [K, B, L], trajectory q_halt [K, B])`` for every rule of :data:`SELECT_RULES`; the steps
    each puzzle ran; the loop's iterations (steps computed for all K*B rows). ``index_B`` is
    each puzzle's index in its dataset, which keys its noise (default ``arange(B)``).
    """
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


def solver(model: TRMModel, variables, puzzle_table, settings: InferenceSettings):
    """A pure function ``(inputs [B, L], ids [B]) -> (answer [B, L], q_halt [B], steps [B])``
    with the weights and settings bound (``settings.select`` picks the answer; puzzle b's noise
    is keyed by index b). Model-only: ``verify`` needs a host-side check and is refused."""
    if settings.verify:
        raise SettingsError("verify runs a rule check outside the model; it cannot be compiled.")
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


# ---- continuous batching ------------------------------------------------------------------------


def _refill(model, K, variables, state: _State, take_B, inputs, ids, index) -> _State:
    """Slots in ``take``: a fresh puzzle (init latents, step 0, fresh tracking). Finished slots
    that take nothing go idle."""
    fresh = _init_state(model, variables, K, inputs, ids, index, jnp.ones_like(take_B))

    def put(mask_B, new, old):
        if new.ndim == 0:
            return old
        rows = new.shape[0] // mask_B.shape[0]
        m = jnp.tile(mask_B, rows) if rows > 1 else mask_B
        return jnp.where(m.reshape(m.shape + (1,) * (new.ndim - 1)), new, old)

    def put_track(new, old):  # [K, B, ...]
        return jnp.where(take_B.reshape((1, -1) + (1,) * (new.ndim - 2)), new, old)

    return state.replace(
        z=tuple(put(take_B, n, o) for n, o in zip(fresh.z, state.z)),
        inputs=put(take_B, fresh.inputs, state.inputs),
        ids=put(take_B, fresh.ids, state.ids),
        index=put(take_B, fresh.index, state.index),
        t=jnp.where(take_B, 0, state.t),
        done=jnp.where(take_B, False, state.done),
        active=jnp.where(take_B, True, state.active & ~state.done),
        track=jax.tree.map(put_track, fresh.track, state.track),
    )


def _advance(model, K, noisy, stops_early, variables, table, state, n, sigma, seed):
    """Steps until some active slot is done (or none is active)."""
    body = _body(model, K, noisy, stops_early, variables, table, n, sigma, jax.random.key(seed))

    def cond(s):
        return jnp.any(s.active & ~s.done) & ~jnp.any(s.active & s.done)

    state = jax.lax.while_loop(cond, body, state)
    return state, _finish(state.track)


@functools.cache
def _jitted_stream(model: TRMModel, K: int, noisy: bool, stops_early: bool):
    return (
        jax.jit(functools.partial(_init_state, model), static_argnums=(1,)),
        jax.jit(functools.partial(_refill, model, K)),
        jax.jit(functools.partial(_advance, model, K, noisy, stops_early)),
    )


# --------------------------------------------------------------------------------------------
# Many puzzles


@dataclasses.dataclass
class Solutions:
    """Answers for P puzzles under every selection rule, and what they cost.

    ``choices[rule]``: numpy Choice (answer [P, L], q_halt [P], step [P], trajectory [P]);
    ``trajectories[rule]``: (answers [K, P, L], q_halt [K, P]); ``steps`` [P]: steps each puzzle
    ran; ``verified[rule]``: (answers [P, L], trajectory [P] or -1) when a check was given;
    ``seconds`` (wall time, first compile included unless warmed up), ``row_steps``: steps
    computed over all K*B rows of every batch (padding and finished rows included).
    """

    settings: InferenceSettings
    choices: dict
    trajectories: dict
    steps: np.ndarray
    verified: dict | None
    seconds: float
    row_steps: int
    net_applications_per_step: int
    continuous: bool

    @property
    def num_puzzles(self) -> int:
        return int(self.steps.shape[0])

    @property
    def answer(self) -> np.ndarray:
        """The model-only answers of ``settings.select`` [P, L] (``verified`` is apart)."""
        return self.choices[self.settings.select].answer

    @property
    def net_applications_per_puzzle(self) -> float:
        """Net applications computed per puzzle (every row of every batch counted)."""
        return self.row_steps * self.net_applications_per_step / max(self.num_puzzles, 1)

    @property
    def puzzles_per_second(self) -> float:
        return self.num_puzzles / max(self.seconds, 1e-9)


def net_applications_per_step(cfg: ModelConfig) -> int:
    """Applications of the reasoning net in one evaluation-mode supervision step of one row."""
    return int(cfg.net_applications)


def _to_host(results: dict) -> tuple[dict, dict]:
    host = jax.device_get(results)
    choices = {r: Choice(*(np.asarray(a) for a in host[r][0])) for r in SELECT_RULES}
    trajectories = {r: (np.asarray(host[r][1]), np.asarray(host[r][2])) for r in SELECT_RULES}
    return choices, trajectories


def solve_many(
    model: TRMModel,
    variables,
    puzzle_table,
    inputs_PxL: np.ndarray,
    ids_P: np.ndarray,
    settings: InferenceSettings = InferenceSettings(),
    *,
    batch_size: int,
    continuous: bool = False,
    check: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    progress=None,
) -> Solutions:
    """Answer every puzzle of ``inputs`` under ``settings``, ``batch_size`` puzzles at a time.

    Plain loop (``continuous=False``): fixed chunks of ``batch_size`` puzzles (the last padded by
    repeating its first puzzle), each a :func:`rollout_batch`. Continuous batching: a fixed
    batch of ``batch_size`` slots in which a finished puzzle is replaced by the next one, so
    with ``first_halt`` no slot waits for the slowest puzzle of its batch; every puzzle is
    answered exactly once, with the same noise keys, so the answers are the plain loop's.
    ``check`` (the task's rule check) fills ``Solutions.verified`` for every rule.
    ``progress``: a :class:`trm_jax.progress.Progress` over puzzles (or None).
    """
    inputs = np.asarray(inputs_PxL, np.int32)
    ids = np.asarray(ids_P, np.int32)
    P, L = inputs.shape
    K = settings.samples
    B = int(batch_size)
    if B < 1:
        raise SettingsError(f"batch_size must be >= 1, got {batch_size}.")
    t0 = time.perf_counter()
    choices = {
        r: Choice(
            np.zeros((P, L), np.int32),
            np.zeros(P, np.float32),
            np.zeros(P, np.int32),
            np.zeros(P, np.int32),
        )
        for r in SELECT_RULES
    }
    trajectories = {
        r: (np.zeros((K, P, L), np.int32), np.zeros((K, P), np.float32)) for r in SELECT_RULES
    }
    steps = np.zeros(P, np.int32)
    seen = np.zeros(P, np.int32)
    row_steps = 0

    def store(rows_P, slots, ch, tr, t):
        for r in SELECT_RULES:
            for field, dst in zip(ch[r], choices[r]):
                dst[rows_P] = field[slots]
            trajectories[r][0][:, rows_P] = tr[r][0][:, slots]
            trajectories[r][1][:, rows_P] = tr[r][1][:, slots]
        steps[rows_P] = t[slots]
        np.add.at(seen, rows_P, 1)

    if not continuous:
        for lo in range(0, P, B):
            x, i = inputs[lo : lo + B], ids[lo : lo + B]
            idx = np.arange(lo, lo + x.shape[0], dtype=np.int32)
            n = x.shape[0]
            if n < B:
                x = np.concatenate([x, np.repeat(x[:1], B - n, 0)])
                i = np.concatenate([i, np.repeat(i[:1], B - n)])
                idx = np.concatenate([idx, np.repeat(idx[:1], B - n)])
            results, t, iters = rollout_batch(model, variables, puzzle_table, x, i, settings, idx)
            ch, tr = _to_host(results)
            store(np.arange(lo, lo + n), np.arange(n), ch, tr, np.asarray(jax.device_get(t)))
            row_steps += int(iters) * K * B
            if progress is not None:
                progress.update(lo + n)
    else:
        init, refill, advance = _jitted_stream(model, K, settings.sigma > 0, settings.stops_early)
        n_steps = jnp.asarray(settings.num_steps(model.cfg), jnp.int32)
        sigma = jnp.asarray(settings.sigma, jnp.float32)
        seed = jnp.asarray(settings.seed, jnp.uint32)
        zeros = np.zeros((B,), np.int32)
        state = init(
            variables, K, jnp.zeros((B, L), jnp.int32), zeros, zeros, jnp.zeros((B,), bool)
        )
        slot_puzzle = np.full(B, -1, np.int64)
        next_p = done_count = 0
        free = np.ones(B, bool)
        while True:
            take = np.zeros(B, bool)
            new_x = np.zeros((B, L), np.int32)
            new_i = np.zeros(B, np.int32)
            new_idx = np.zeros(B, np.int32)
            for b in np.flatnonzero(free):
                if next_p >= P:
                    break
                take[b], new_x[b], new_i[b], new_idx[b] = True, inputs[next_p], ids[next_p], next_p
                slot_puzzle[b] = next_p
                next_p += 1
            state = refill(variables, state, take, new_x, new_i, new_idx)
            iters_before = int(state.iters)
            free = ~take & free
            if not (slot_puzzle >= 0).any():
                break
            state, results = advance(variables, puzzle_table, state, n_steps, sigma, seed)
            host = jax.device_get({"done": state.done, "active": state.active, "t": state.t})
            row_steps += (int(state.iters) - iters_before) * K * B
            finished = np.flatnonzero(host["done"] & host["active"])
            ch, tr = _to_host(results)
            store(slot_puzzle[finished], finished, ch, tr, np.asarray(host["t"]))
            done_count += finished.size
            slot_puzzle[finished] = -1
            free = np.zeros(B, bool)
            free[finished] = True
            free |= slot_puzzle < 0
            if progress is not None:
                progress.update(done_count)
    if progress is not None:
        progress.update(P, force=True)
    if P and not (seen == 1).all():  # a bookkeeping error must never pass silently
        raise RuntimeError(f"{int((seen != 1).sum())} puzzles were not answered exactly once.")
    verified = None
    if check is not None:
        verified = {
            r: verify_choice(inputs, trajectories[r][0], choices[r].answer, check)
            for r in SELECT_RULES
        }
    return Solutions(
        settings=settings,
        choices=choices,
        trajectories=trajectories,
        steps=steps,
        verified=verified,
        seconds=time.perf_counter() - t0,
        row_steps=row_steps,
        net_applications_per_step=net_applications_per_step(model.cfg),
        continuous=continuous,
    )
