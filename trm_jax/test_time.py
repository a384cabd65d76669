"""Thinking longer at test time: inference settings, selection rules, verification.

One :class:`InferenceSettings` describes how a trained model answers: how many supervision steps it
runs (``steps`` N, any number, fewer or more than ``halt_max_steps``), how many trajectories per
puzzle (``samples`` K), how much Gaussian noise enters them and where (``sigma``, ``noise_at``),
which (step, trajectory) gives the answer (``select``), whether a task's rule check may pick among
the trajectories (``verify``) and the ``seed``. The defaults are the reference: N =
``halt_max_steps``, K = 1, no noise, the last step's answer. The rollout that runs them is
:mod:`trm_jax.rollout` (one compiled program for every N, online tracking of every rule, early
halting) and :mod:`trm_jax.batching` (many puzzles, continuous batching).

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
  when all its puzzles have (``rollout.rollout_batch``), and ``batching.solve_many`` with
  ``continuous=True`` replaces a finished puzzle by the next one (the reference's training
  carry, used for inference).

``verify`` (Sudoku, maze) keeps the first trajectory, in order, whose answer passes the task's
rule check (a callable ``check(inputs_L, answer_L) -> bool``); it uses knowledge outside the
model, so it is returned apart (``batching.Solutions.verified``), never as a model-only answer.

For ARC, every trajectory votes: ``batching.Solutions.trajectories[rule]`` holds each
trajectory's answer and q_halt, to be added to :class:`trm_jax.arc_scoring.ArcVoter` one
trajectory at a time.

Shape letters: N steps, K samples, B puzzles, L seq_len.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from trm_jax import tasks
from trm_jax.model.config import ModelConfig

__all__ = [
    "NOISE_PLACES",
    "SELECT_RULES",
    "Choice",
    "InferenceSettings",
    "SettingsError",
    "select",
    "select_first_halt",
    "select_last",
    "select_q_halt",
    "select_vote",
    "add_settings_arguments",
    "answer_check",
    "settings_from_args",
    "settings_with",
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

    @property
    def is_default(self) -> bool:
        """Whether every field is at its default (the reference's evaluation, as given)."""
        return self == InferenceSettings()

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

    def slug(self, cfg: ModelConfig) -> str:
        """A file-name form of the settings: ``vote16_K4_sigma0.1_seed0`` (``_verify``)."""
        return _slug(self, cfg)

    def label(self, cfg: ModelConfig | None = None) -> str:
        """A short name: ``q_halt@16 K=4 sigma=0.1`` (the steps as given, or N if ``cfg``)."""
        n = self.num_steps(cfg) if cfg is not None else (self.steps or "N_sup")
        text = f"{self.select}@{n}"
        if self.samples > 1:
            text += f" K={self.samples}"
        if self.sigma > 0:
            text += f" sigma={self.sigma:g}"
        return text + (" +verify" if self.verify else "")


def settings_with(settings: InferenceSettings | None = None, **overrides) -> InferenceSettings:
    """``settings`` (default: the reference) with keyword ``overrides`` (``steps=32``,
    ``samples=4`` ...); an unknown name or a bad value raises SettingsError (one sentence)."""
    if settings is not None and not isinstance(settings, InferenceSettings):
        raise SettingsError(
            f"settings must be an InferenceSettings, got {type(settings).__name__}."
        )
    names = [f.name for f in dataclasses.fields(InferenceSettings)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise SettingsError(f"unknown inference setting {unknown[0]!r}; the settings are {names}.")
    return dataclasses.replace(settings or InferenceSettings(), **overrides)


def _slug(s: InferenceSettings, cfg: ModelConfig) -> str:
    text = f"{s.select}{s.num_steps(cfg)}_K{s.samples}_sigma{s.sigma:g}_seed{s.seed}"
    return text + ("_verify" if s.verify else "")


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


class PerTrajectory(NamedTuple):
    """One answer per trajectory: pred [K, B, L], q [K, B], step [K, B], halted [K, B]."""

    pred: Any
    q: Any
    step: Any
    halted: Any


def _take(a_NxKxB, idx_KxB):
    return jnp.take_along_axis(a_NxKxB, idx_KxB[None], axis=0)[0]


def _steps_reduce(rule: str, preds_NxKxBxL, q_NxKxB, halts_NxKxB) -> PerTrajectory:
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
    return PerTrajectory(pred, _take(q, idx), idx + 1, halted)


def _first_true(mask_KxB):
    """Index of the first True along K (0 if none)."""
    return jnp.argmax(mask_KxB, axis=0).astype(jnp.int32)


def reduce_trajectories(rule: str, t: PerTrajectory) -> Choice:
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
    return reduce_trajectories(rule, _steps_reduce(rule, preds_NxKxBxL, q, halts))


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
    """The rule check ``check(inputs_L, answer_L) -> bool`` of a task's tokens, from the task
    record's :meth:`check` (:mod:`trm_jax.tasks`): Sudoku, a valid grid that keeps the givens;
    maze, a shortest S-G path. Raises SettingsError for a task without one (ARC)."""
    if task not in ANSWER_CHECK_TASKS:
        raise SettingsError(
            f"verify needs a task with a rule check (Sudoku or maze), not {task or 'unknown'}."
        )

    def check(inputs_L, answer_L):
        record = tasks.named(task, int(np.asarray(inputs_L).size))
        return bool(record.check(record.decode(inputs_L), record.decode(answer_L))[0])

    return check


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
