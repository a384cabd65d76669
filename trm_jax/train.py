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

from trm_jax import checkpoint as ckpt
from trm_jax import config as config_lib
from trm_jax import evaluate as ev
from trm_jax import guards
from trm_jax import sharding as shd
from trm_jax.arc_scoring import ArcVoter
from trm_jax.budget import DecayBudget, _eval_guess, agree, decay_horizon  # noqa: F401 (decay_horizon: public here)
from trm_jax.data import pipeline
from trm_jax.data.dataset import DatasetError
from trm_jax.model.config import resolve_forward_dtype
from trm_jax.model.trm import TRMModel
from trm_jax.progress import Progress
from trm_jax.steps import LOSS_KEYS, Steps, TrainState, build_steps, make_setup
from trm_jax.tasks import sudoku


class TrainingStopped(RuntimeError):
    """Training stopped on a non-finite loss (the last good checkpoint is kept)."""


class Interrupted(RuntimeError):
    """SIGINT / SIGTERM stopped training after a checkpoint was saved; ``exit_code`` is 130 or
    143 and the message says where it was saved and how to resume."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass
class RunResult:
    step: int
    eval_metrics: dict
    checkpoint_dir: str
    seconds: float
    state: TrainState | None = None
    by_difficulty: dict | None = None  # Sudoku: the last evaluation's accuracy by difficulty


# ---- pieces of the run ---------------------------------------------------------------------


def _total_steps(config, meta) -> int:
    t = config.train
    if int(t.max_steps) < 0:
        raise config_lib.ConfigError(
            f"train.max_steps must be >= 0 (0: no limit), got {t.max_steps}."
        )
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


def curriculum_of(config) -> pipeline.Curriculum | None:
    """The config's easy-to-hard sampling (``data.curriculum``), None for the reference's order.
    Configs saved before the setting existed have none."""
    d = config.data
    name = d.get("curriculum", "none")
    if name == "none":
        return None
    try:  # fields a config lacks keep Curriculum's defaults
        given = {
            k: t(d[f"curriculum_{k}"])
            for k, t in (("start", float), ("batches", int))
            if f"curriculum_{k}" in d
        }
        return pipeline.Curriculum(name, **given)
    except ValueError as e:
        raise config_lib.ConfigError(f"data.{e}") from None


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
        over = agree(over) if step % log_every == 0 else False
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


def run(
    config, workdir: str, *, verbose: bool = True, clock=time.monotonic, resume_hint: str = ""
) -> RunResult:
    """Train (or resume) the config in ``workdir``; returns the final evaluation.

    ``clock`` (seconds) drives the time budget and the budget-keyed decay (tests pass a fake).
    One run per work dir: a second start on a work dir in use raises GuardError naming the
    holder. SIGINT / SIGTERM finish the step, save and raise :class:`Interrupted`
    (``resume_hint``: the command that resumes, for its message).
    """
    t_start = clock()
    guards.check_output_dir(workdir, "--workdir")
    shd.maybe_initialize_distributed(config)
    # Process 0 alone holds the lock (every process of a multi-host run shares the work dir);
    # the kernel drops it however the process ends, so a killed run leaves no stale lock.
    lock = guards.WorkdirLock(workdir).acquire() if jax.process_index() == 0 else None
    try:
        with guards.StopSignals() as stop:
            return _run(config, workdir, verbose, clock, t_start, stop, resume_hint)
    finally:
        if lock is not None:
            lock.release()


def _stop_now(stop: guards.StopSignals, step: int, log_every: int) -> bool:
    """Whether a signal asks to stop at this step boundary (on every process alike: in a
    multi-host run process 0's flag decides, asked at the log steps like the time budget)."""
    asked = stop.requested is not None
    if jax.process_count() > 1:
        asked = agree(asked) if step % log_every == 0 else False
    return asked


def _run(config, workdir, verbose, clock, t_start, stop, resume_hint) -> RunResult:
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
    data = pipeline.train_iterator(
        config.data.path,
        global_batch_size=tcfg.global_batch_size,
        seed=tcfg.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        epochs_per_iter=tcfg.eval_interval,
        curriculum=curriculum_of(config),
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
    if step < end or latest is None:
        # A restart with nothing left to train keeps the config.json the run was trained with.
        ckpt.write_config(workdir, config_lib.to_json(config))

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
                where = (
                    f"the last good checkpoint (step {last_good}) is kept in"
                    if last_good is not None
                    else "no checkpoint had been saved yet in"
                )
                raise TrainingStopped(
                    f"The loss became {host['loss']} between steps {step_log} and {step}; "
                    f"training stopped and {where} {ckpt.checkpoint_dir(workdir)}."
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
        if step < end and _stop_now(stop, step, tcfg.log_every):
            progress.close()
            if last_good != step:
                ckpt.save(manager, step, state, data.get_state(), run_meta)
            manager.close()
            if writer:
                writer.close()
            again = resume_hint or "the same command"
            raise Interrupted(
                f"{stop.name} at step {step}: saved checkpoint {ckpt.checkpoint_dir(workdir)}/"
                f"{step}; resume with {again}.",
                stop.exit_code,
            )
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
