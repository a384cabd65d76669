"""python -m trm_jax.train --config=configs/X.py --workdir=DIR [--config.a.b=v ...]

Trains any config on any dataset on whatever devices JAX sees (one CPU, GPUs, a TPU pod through
``jax.distributed``), evaluating every ``eval_interval`` epochs with the EMA weights (when
``train.ema``) and checkpointing everything a resumed run needs. Started on a work dir that
already has checkpoints, it resumes from the latest; the result equals an uninterrupted run.
Bad input (unknown config key, impossible mesh, missing dataset, incompatible checkpoint) stops
with one sentence and exit status 2; a NaN loss stops with the last good checkpoint kept.

The command line is :mod:`trm_jax.train_cli`; this module is the loop (:func:`run`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from trm_jax import checkpoint as ckpt
from trm_jax import config as config_lib
from trm_jax import evaluate as ev
from trm_jax import sharding as shd
from trm_jax.arc_scoring import ArcVoter
from trm_jax.data import pipeline
from trm_jax.data.dataset import DatasetError
from trm_jax.model.config import resolve_forward_dtype
from trm_jax.model.trm import TRMModel
from trm_jax.progress import Progress
from trm_jax.steps import LOSS_KEYS, Steps, TrainState, build_steps, make_setup
from trm_jax.tasks import sudoku


class TrainingStopped(RuntimeError):
    """Training stopped on a non-finite loss (the last good checkpoint is kept)."""


@dataclasses.dataclass
class RunResult:
    step: int
    eval_metrics: dict
    checkpoint_dir: str
    seconds: float
    state: TrainState | None = None
    by_difficulty: dict | None = None  # Sudoku: the last evaluation's accuracy by difficulty


def _agree(value):
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
        return _agree(int(h))


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


# ---- pieces of the run ---------------------------------------------------------------------


def _total_steps(config, meta) -> int:
    t = config.train
    total = int(
        t.epochs * meta.total_groups * meta.mean_puzzle_examples / config.data.global_batch_size
    )
    if t.max_steps:
        total = min(total, int(t.max_steps)) if total > 0 else int(t.max_steps)
    if total <= 0:
        raise config_lib.ConfigError(
            f"The run would take no steps: epochs {t.epochs} x {meta.total_groups} groups / "
            f"batch {config.data.global_batch_size}."
        )
    return total


def _check_data(config) -> None:
    if not config.data.path:
        raise config_lib.ConfigError("data.path is empty; pass --config.data.path=DIR.")
    if not os.path.isdir(config.data.path):
        raise DatasetError(
            f"Dataset directory {config.data.path} does not exist; build one with "
            f"`python -m data_gen.sudoku build --out {config.data.path}`."
        )


def _restore(manager, workdir, steps: Steps, mcfg, run_meta, tcfg, verbose):
    """(state, data iterator state, latest step): resumed from the latest checkpoint, or new."""
    latest = manager.latest_step()
    if latest is None:
        return steps.init(jax.random.key(tcfg.seed)), None, None
    saved = ckpt.read_meta(manager, latest)
    ckpt.check_compatible(saved, mcfg, f"Checkpoint {ckpt.checkpoint_dir(workdir)}/{latest}")
    for key in ("global_batch_size", "table_rows"):
        if saved.get(key) != run_meta[key]:
            raise ckpt.CheckpointError(
                f"Checkpoint {latest} in {workdir} has {key}={saved.get(key)}, "
                f"but this run has {run_meta[key]}."
            )
    target = ckpt.abstract_like(steps.abstract, steps.state)
    state, data_state, _ = ckpt.restore(manager, latest, target)
    if verbose:
        print(f"Resuming from {ckpt.checkpoint_dir(workdir)}/{latest}", flush=True)
    return state, data_state, latest


def run_eval(
    steps: Steps, state: TrainState, config, mesh, use_ema: bool, arc=None, by_difficulty=None
) -> dict:
    """The reference's evaluation (every example of the eval split, all halt_max_steps steps,
    the last step scored) through :func:`trm_jax.evaluate.score`; for an ARC test split
    (``arc = evaluate.arc_references(...)``) also the voted pass@K, the headline. For a Sudoku
    split a dict ``by_difficulty`` receives :func:`trm_jax.tasks.sudoku.split_breakdown`."""
    params = state.ema_params if use_ema else state.params
    voter = ArcVoter(arc[0]) if arc else None
    split = config.data.eval_split
    keep = by_difficulty is not None and sudoku.is_sudoku_split(
        pipeline.load_metadata(config.data.path, split)
    )
    result = ev.score(
        lambda batch: steps.evaluate(params, state.constants, state.puzzle_table, batch),
        config.data.path,
        config.data.eval_split,
        batch_size=int(config.data.eval_global_batch_size or config.data.global_batch_size),
        mesh=mesh,
        max_examples=int(config.data.eval_max_examples or 0),
        voter=voter,
        keep_predictions=keep,
    )
    metrics = dict(result.metrics)
    if keep:
        by_difficulty.clear()
        by_difficulty.update(sudoku.split_breakdown(config.data.path, split, result.predictions))
    if arc:
        metrics.update(ev.arc_score([voter], arc[1])[0])
    return metrics


def _train_metrics(host: dict, n: int, gbs: int, seconds: float) -> dict:
    """Sums over the last ``n`` steps -> means (losses per row, metrics per halted row)."""
    out = {k: host[k] / n for k in ("loss", "lr", "grad_norm", "param_norm")}
    out.update({k: host[k] / gbs / n for k in LOSS_KEYS if k in host})
    count = max(host.get("count", 0.0), 1.0)
    out.update({k: host[k] / count for k in ("accuracy", "exact_accuracy", "q_halt_accuracy")})
    out["steps"] = host["steps"] / count
    out["examples_per_second"] = n * gbs / max(seconds, 1e-9)
    return out


def _writer(workdir: str):
    if jax.process_index() != 0:
        return None
    from tensorboardX import SummaryWriter  # lazy: a heavy import only the trainer needs

    return SummaryWriter(os.path.join(workdir, "tb"))


def _apply_horizon(state, steps: Steps, h: int, decay, progress, verbose) -> TrainState:
    """``state`` with its decay horizon set to ``h`` (and the progress bar's total)."""
    value = np.asarray(h, np.int32)
    horizon = jax.make_array_from_callback((), steps.state.horizon, lambda _: value)
    progress.total = h
    if verbose:
        progress.close()
        print(
            f"Learning-rate decay ends at step {h} ({decay.s_per_step:.3f} s/step measured, "
            f"{decay.elapsed:.0f} of {decay.budget_s:.0f} s used).",
            flush=True,
        )
    return state.replace(horizon=horizon)


def _over_budget(budget: float, elapsed: float, step: int, log_every: int) -> bool:
    over = bool(budget) and elapsed > budget
    if budget and jax.process_count() > 1:
        # Hosts' clocks differ, so they follow process 0; asking waits for the devices, so only
        # at the log steps, where the loop waits for them anyway (the stop comes at most
        # log_every - 1 steps late).
        over = _agree(over) if step % log_every == 0 else False
    return over


def _announce(mcfg, state, mesh, total_steps, tcfg, workdir, writer, dtype_asked) -> None:
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    _, why = resolve_forward_dtype(dtype_asked)
    print(
        f"Training {mcfg.arch} ({n_params:,} parameters) for {total_steps} steps on "
        f"{mesh.shape['data']} device(s), global batch {tcfg.global_batch_size}; "
        f"work dir {workdir}\nForward dtype: {mcfg.forward_dtype} ({why}).",
        flush=True,
    )
    if writer:
        writer.add_scalar("num_params", n_params, 0)


def train_progress(total_steps, step, budget, enabled, clock, t_start) -> Progress:
    """The training bar: its ETA and total come from the time budget when one is set."""
    return Progress(
        "train", total_steps, unit="steps", start=step, enabled=enabled, every=0.0, bar=True,
        budget_s=budget or None, clock=clock, t0=t_start,
    )  # fmt: skip


# ---- the run -------------------------------------------------------------------------------


def run(config, workdir: str, *, verbose: bool = True, clock=time.monotonic) -> RunResult:
    """Train (or resume) the config in ``workdir``; returns the final evaluation.

    ``clock`` (seconds) drives the time budget and the budget-keyed decay (tests pass a fake).
    """
    t_start = clock()
    shd.maybe_initialize_distributed(config)
    _check_data(config)
    meta = pipeline.load_metadata(config.data.path, "train")
    tcfg = config_lib.train_config(config)
    mcfg = config_lib.model_config(config, meta)
    mesh = shd.make_mesh(config.mesh.data)
    shd.check_batch(tcfg.global_batch_size, mesh)
    eval_gbs = int(config.data.eval_global_batch_size or tcfg.global_batch_size)
    shd.check_batch(eval_gbs, mesh)
    total_steps = _total_steps(config, meta)
    eval_every = max(1, total_steps // max(1, tcfg.epochs // tcfg.eval_interval))
    steps = build_steps(make_setup(TRMModel(mcfg), tcfg, total_steps), mesh)
    arc = ev.arc_references(config.data.path, config.data.eval_split)
    headline = ev.headline_name(arc is not None)

    os.makedirs(workdir, exist_ok=True)
    manager = ckpt.make_manager(workdir, config.checkpoint.keep, config.checkpoint.keep_best)
    run_meta = {
        "model": dataclasses.asdict(mcfg),
        "global_batch_size": tcfg.global_batch_size,
        "table_rows": steps.table_rows,
        "total_steps": total_steps,
        "dataset": os.path.abspath(config.data.path),
    }
    state, data_state, latest = _restore(manager, workdir, steps, mcfg, run_meta, tcfg, verbose)
    ckpt.write_config(workdir, config_lib.to_json(config))
    data = pipeline.train_iterator(
        config.data.path,
        global_batch_size=tcfg.global_batch_size,
        seed=tcfg.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        epochs_per_iter=tcfg.eval_interval,
    )
    if data_state:
        data.set_state(data_state)

    main_host = verbose and jax.process_index() == 0
    writer = _writer(workdir)
    step = int(state.batches)  # loop position in batches (pseudocode ACT: updates differ)
    budget = float(tcfg.time_budget_s or 0.0)
    progress = train_progress(total_steps, step, budget, main_host, clock, t_start)
    if main_host and step == 0:
        _announce(mcfg, state, mesh, total_steps, tcfg, workdir, writer, config.model.forward_dtype)
    end, decay = total_steps, None
    if tcfg.lr_decay_end == "time_budget" and int(state.horizon) < total_steps:
        end = int(state.horizon)  # measured by the process that started this run
    elif tcfg.lr_decay_end == "time_budget":
        guess = _eval_guess(config, mcfg, eval_gbs)
        decay = DecayBudget(budget, t_start, step, total_steps, eval_every, tcfg, guess)

    def report_and_save(step: int, metrics: dict, state: TrainState) -> None:
        """Print and log an evaluation; save its checkpoint (best by the headline metric)."""
        progress.close()
        if main_host:
            shown = " ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            print(f"eval @ step {step}: {shown}", flush=True)
        if writer:
            for k, v in metrics.items():
                writer.add_scalar(f"eval/{k}", v, step)
            writer.flush()
        best = {"exact_accuracy": metrics.get("exact_accuracy", 0.0)}
        best["headline"] = metrics.get(headline, 0.0)  # what keep_best ranks by
        ckpt.save(manager, step, state, data.get_state(), run_meta, best)

    last_good, eval_metrics, acc, by_difficulty = latest, {}, {}, {}
    t_log, step_log = time.time(), step
    while step < end:
        if _over_budget(budget, clock() - t_start, step, tcfg.log_every) and step > (latest or 0):
            progress.close()
            if main_host:
                print(f"Time budget of {budget:.0f} s reached at step {step}.", flush=True)
            if not eval_metrics or last_good != step:
                eval_metrics = run_eval(steps, state, config, mesh, tcfg.ema, arc, by_difficulty)
                report_and_save(step, eval_metrics, state)
            break
        state, metrics = steps.train(state, shd.global_batch(next(data), mesh))
        step += 1
        if decay and decay.t_first is None:
            jax.block_until_ready(metrics)
            decay.started(step, clock())
        if decay and decay.due(step) and step < end:
            jax.block_until_ready(metrics)
            end = decay.calibrate(step, clock())
            state = _apply_horizon(state, steps, end, decay, progress, main_host)
        acc = {k: acc[k] + v if k in acc else v for k, v in metrics.items()}
        is_eval = step % eval_every == 0 or step == end
        is_ckpt = bool(config.checkpoint.every_steps) and step % config.checkpoint.every_steps == 0
        if step % tcfg.log_every == 0 or is_eval or is_ckpt:
            host = {k: float(v) for k, v in jax.device_get(acc).items()}
            if not math.isfinite(host["loss"]):
                progress.close()
                where = f"checkpoint {last_good}" if last_good is not None else "no checkpoint yet"
                raise TrainingStopped(
                    f"The loss became {host['loss']} between steps {step_log} and {step}; "
                    f"stopped with the last good {where} in {ckpt.checkpoint_dir(workdir)}."
                )
            m = _train_metrics(host, step - step_log, tcfg.global_batch_size, time.time() - t_log)
            if writer:
                for k, v in m.items():
                    writer.add_scalar(f"train/{k}", v, step)
            # Accuracy and exact accuracy of the rows that halted on these steps (the others
            # have no answer yet), so on a small batch "exact(halted)" moves in coarse jumps.
            info = f"loss {m['loss']:.4f} acc {m['accuracy']:.3f} exact(halted) "
            progress.update(step, info + f"{m['exact_accuracy']:.3f}")
            acc, t_log, step_log = {}, time.time(), step
        if is_eval:
            t_eval = clock()
            eval_metrics = run_eval(steps, state, config, mesh, tcfg.ema, arc, by_difficulty)
            if decay and decay.calibrated and step < end:
                # Re-fit before saving, so the checkpoint holds the new horizon.
                end = decay.after_eval(step, clock() - t_eval, clock())
                state = _apply_horizon(state, steps, end, decay, progress, main_host)
            report_and_save(step, eval_metrics, state)
            last_good = step
        elif is_ckpt:
            ckpt.save(manager, step, state, data.get_state(), run_meta)
            last_good = step
    progress.close()
    if main_host and by_difficulty:
        print(sudoku.format_breakdown(by_difficulty), flush=True)
    if manager.latest_step() != step:
        ckpt.save(manager, step, state, data.get_state(), run_meta)
    manager.wait_until_finished()
    manager.close()
    if writer:
        writer.close()
    seconds = clock() - t_start
    return RunResult(
        step, eval_metrics, ckpt.checkpoint_dir(workdir), seconds, state, by_difficulty or None
    )


if __name__ == "__main__":
    from trm_jax.train_cli import main  # the command line (a module apart from the loop)

    sys.exit(main())
