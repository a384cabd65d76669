"""The time-budgeted learning-rate decay of a training run (``lr_decay_end = "time_budget"``).

:func:`decay_horizon` says where a decay must end for training to finish inside the budget;
:class:`DecayBudget` measures it during the run. Used by :mod:`trm_jax.train`.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.experimental import multihost_utils

from trm_jax.data import pipeline


def agree(value):
    """Process 0's value on every process (clocks differ between hosts)."""
    if jax.process_count() == 1:
        return value
    return type(value)(multihost_utils.broadcast_one_to_all(np.asarray(value)).item())


# ---- the time-budgeted decay ---------------------------------------------------------------


def decay_horizon(
    step: int,
    elapsed_s: float,
    budget_s: float,
    s_per_step: float,
    eval_s: float,
    eval_every: int,
    cap: int,
    margin: float = 0.02,
) -> int:
    """The step where a learning-rate decay must end for training to finish inside the budget.

    From ``step``, after ``elapsed_s`` of a ``budget_s`` budget, at ``s_per_step`` seconds per
    step, leaving ``eval_s`` seconds for each evaluation that falls strictly before the horizon
    (one every ``eval_every`` steps; the final evaluation runs after the budget, as with a plain
    time budget) and a ``margin`` of the time left for jitter. Never past ``cap`` (the run's
    step count) nor before ``step``.
    """

    def fit(reserve: float) -> int:
        left = (budget_s - elapsed_s - reserve) * (1.0 - margin)
        return min(cap, step + max(0, int(left / max(s_per_step, 1e-9))))

    h = fit(0.0)
    evals_before = max(0, (h - 1) // eval_every - step // eval_every)
    return max(step, fit(evals_before * eval_s))


class DecayBudget:
    """Where a ``lr_decay_end = "time_budget"`` run's decay, and so the run, ends.

    The horizon is measured once this run's warm-up is over (the warm-up rate does not depend on
    it): :meth:`started` after the first (compiling) step, :meth:`due` says when to
    :meth:`calibrate`; it is re-measured after each evaluation (:meth:`after_eval`). A resumed
    run keeps the horizon the first process set (``resumed_horizon``).
    """

    def __init__(self, budget_s, t_start, step, total_steps, eval_every, tcfg, eval_guess):
        self.budget_s, self.t_start, self.total = budget_s, t_start, total_steps
        self.eval_every, self.eval_guess = eval_every, eval_guess  # guess(s_per_step) -> s
        self.calib_step = max(tcfg.lr_warmup_steps, step + 20)
        self.t_first = self.step_first = None
        self.eval_s = None  # the last evaluation's seconds
        self.evals_total = 0.0  # seconds of evaluation since t_first
        self.calibrated = False

    def started(self, step: int, now: float) -> None:
        self.t_first, self.step_first = now, step

    def due(self, step: int) -> bool:
        return not self.calibrated and step == self.calib_step

    def calibrate(self, step: int, now: float) -> int:
        self.calibrated = True
        return self._horizon(step, now)

    def after_eval(self, step: int, eval_s: float, now: float) -> int:
        self.eval_s = eval_s
        self.evals_total += eval_s
        return self._horizon(step, now)

    def _horizon(self, step: int, now: float) -> int:
        self.s_per_step = (now - self.t_first - self.evals_total) / max(step - self.step_first, 1)
        eval_s = self.eval_guess(self.s_per_step) if self.eval_s is None else self.eval_s
        elapsed = now - self.t_start
        h = decay_horizon(
            step, elapsed, self.budget_s, self.s_per_step, eval_s, self.eval_every, self.total
        )
        self.elapsed = elapsed
        return agree(int(h))


def _eval_guess(config, mcfg, eval_gbs: int):
    """Before the first evaluation its cost is guessed: a forward pass is about a third of a
    train step's work per example and supervision step."""
    meta_eval = pipeline.load_metadata(config.data.path, config.data.eval_split)
    n_eval = meta_eval.total_groups * meta_eval.mean_puzzle_examples
    if config.data.eval_max_examples:
        n_eval = min(n_eval, int(config.data.eval_max_examples))
    n_eval = math.ceil(n_eval / eval_gbs) * eval_gbs
    gbs = config.data.global_batch_size
    return lambda s_per_step: s_per_step * n_eval / gbs * mcfg.halt_max_steps / 3
