"""python -m trm_jax.train --config=configs/X.py --workdir=DIR [--config.a.b=v ...]

Trains any config on any dataset on whatever devices JAX sees (one CPU, GPUs, a TPU pod through
``jax.distributed``), evaluating every ``eval_interval`` epochs with the EMA weights (when
``train.ema``) and checkpointing everything a resumed run needs. Started on a work dir that
already has checkpoints, it resumes from the latest; the result equals an uninterrupted run.
Bad input (unknown config key, impossible mesh, missing dataset, incompatible checkpoint) stops
with one sentence and exit status 2; a NaN loss stops with the last good checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time

import jax
import numpy as np

from trm_jax import checkpoint as ckpt
from trm_jax import config as config_lib
from trm_jax import sharding as shd
from trm_jax.data import pipeline
from trm_jax.data.dataset import DatasetError
from trm_jax.model.trm import TRMModel
from trm_jax.steps import (
    LOSS_KEYS,
    TrainState,
    evaluate_batch,
    init_state,
    make_setup,
    train_step,
    train_step_pseudocode,
)


class TrainingStopped(RuntimeError):
    """Training stopped on a non-finite loss (the last good checkpoint is kept)."""


@dataclasses.dataclass
class RunResult:
    step: int
    eval_metrics: dict
    checkpoint_dir: str
    seconds: float
    state: TrainState | None = None


# ---- shardings -------------------------------------------------------------------------------


def state_shardings(abstract: TrainState, mesh) -> TrainState:
    """Batch-shaped leaves (the carry) split on ``data``; the puzzle table split by rows;
    everything else replicated."""
    rep = shd.replicated(mesh)
    batch = shd.batch_sharding(mesh)
    sh = jax.tree.map(lambda _: rep, abstract)
    carry = jax.tree.map(lambda _: batch, abstract.carry)
    return sh.replace(carry=carry, puzzle_table=shd.table_sharding(mesh))


# ---- progress and logging ------------------------------------------------------------------


class Progress:
    """A one-line progress display on stderr: step, loss, accuracy, speed, time left."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.start = total, start
        self.t0 = time.time()
        self.enabled = enabled
        self.tty = sys.stderr.isatty()

    def update(self, step: int, info: str, force: bool = False) -> None:
        if not self.enabled:
            return
        done = step - self.start
        dt = max(time.time() - self.t0, 1e-9)
        rate = done / dt
        left = (self.total - step) / rate if rate > 0 else float("inf")
        frac = step / max(self.total, 1)
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        eta = f"{left / 60:.1f}m" if math.isfinite(left) else "?"
        line = f"[{bar}] {step}/{self.total} {info} {rate:.2f} step/s eta {eta}"
        if self.tty and not force:
            sys.stderr.write("\r" + line[:160].ljust(160))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def newline(self):
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _writer(workdir: str):
    if jax.process_index() != 0:
        return None
    from tensorboardX import SummaryWriter

    return SummaryWriter(os.path.join(workdir, "tb"))


# ---- evaluation ----------------------------------------------------------------------------


def run_eval(p_eval, state: TrainState, config, mesh, use_ema: bool) -> dict:
    """The reference's evaluation: every test example, all halt_max_steps steps, last step."""
    gbs = int(config.data.eval_global_batch_size or config.data.global_batch_size)
    params = state.ema_params if use_ema else state.params
    totals: dict = {}
    seen = 0
    limit = int(config.data.eval_max_examples or 0)
    for local in pipeline.eval_batches(
        config.data.path,
        global_batch_size=gbs,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        split=config.data.eval_split,
    ):
        if limit and seen >= limit:
            break
        batch = shd.global_batch(
            {k: local[k] for k in ("inputs", "labels", "puzzle_identifiers")}, mesh
        )
        _, sums = p_eval(params, state.constants, state.puzzle_table, batch)
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        seen += gbs
    count = max(totals.get("count", 0.0), 1.0)
    out = {k: v / count for k, v in totals.items() if k != "count"}
    out["count"] = totals.get("count", 0.0)
    return out


# ---- the run -------------------------------------------------------------------------------


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


def _agree(value):
    """Process 0's value on every process (clocks differ between hosts)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return type(value)(multihost_utils.broadcast_one_to_all(np.asarray(value)).item())


def run(config, workdir: str, *, verbose: bool = True, clock=time.monotonic) -> RunResult:
    """Train (or resume) the config in ``workdir``; returns the final evaluation.

    ``clock`` (seconds) drives the time budget and the budget-keyed decay (tests pass a fake).
    """
    t_start = clock()
    shd.maybe_initialize_distributed(config)
    if not config.data.path:
        raise config_lib.ConfigError("data.path is empty; pass --config.data.path=DIR.")
    if not os.path.isdir(config.data.path):
        raise DatasetError(
            f"Dataset directory {config.data.path} does not exist; build one with "
            f"`python -m data_gen.sudoku build --out {config.data.path}`."
        )
    meta = pipeline.load_metadata(config.data.path, "train")
    tcfg = config_lib.train_config(config)
    mcfg = config_lib.model_config(config, meta)
    mesh = shd.make_mesh(config.mesh.data)
    shd.check_batch(tcfg.global_batch_size, mesh)
    eval_gbs = int(config.data.eval_global_batch_size or tcfg.global_batch_size)
    shd.check_batch(eval_gbs, mesh)
    total_steps = _total_steps(config, meta)
    n_evals = max(1, tcfg.epochs // tcfg.eval_interval)
    eval_every = max(1, total_steps // n_evals)

    model = TRMModel(mcfg)
    setup = make_setup(model, tcfg, total_steps)
    table_rows = shd.padded_rows(max(mcfg.num_puzzle_identifiers, 1), mesh)

    os.makedirs(workdir, exist_ok=True)
    manager = ckpt.make_manager(workdir, config.checkpoint.keep, config.checkpoint.keep_best)
    run_meta = {
        "model": dataclasses.asdict(mcfg),
        "global_batch_size": tcfg.global_batch_size,
        "table_rows": table_rows,
        "total_steps": total_steps,
        "dataset": os.path.abspath(config.data.path),
    }

    abstract = jax.eval_shape(lambda k: init_state(setup, k, table_rows), jax.random.key(0))
    shardings = state_shardings(abstract, mesh)
    data_state = None
    latest = manager.latest_step()
    if latest is not None:
        saved = ckpt.read_meta(manager, latest)
        ckpt.check_compatible(saved, mcfg, f"Checkpoint {ckpt.checkpoint_dir(workdir)}/{latest}")
        for key in ("global_batch_size", "table_rows"):
            if saved.get(key) != run_meta[key]:
                raise ckpt.CheckpointError(
                    f"Checkpoint {latest} in {workdir} has {key}={saved.get(key)}, "
                    f"but this run has {run_meta[key]}."
                )
        state, data_state, _ = ckpt.restore(
            manager, latest, ckpt.abstract_like(abstract, shardings)
        )
        if verbose:
            print(f"Resuming from {ckpt.checkpoint_dir(workdir)}/{latest}", flush=True)
    else:
        init = jax.jit(
            functools.partial(init_state, setup, table_rows=table_rows), out_shardings=shardings
        )
        state = init(jax.random.key(tcfg.seed))
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

    step_fn = train_step if tcfg.deep_supervision == "carry" else train_step_pseudocode
    b_sh = shd.batch_sharding(mesh)
    batch_sh = {"inputs": b_sh, "labels": b_sh, "puzzle_identifiers": b_sh}
    p_train = jax.jit(
        functools.partial(step_fn, setup),
        in_shardings=(shardings, batch_sh),
        out_shardings=(shardings, shd.replicated(mesh)),
        donate_argnums=0,
    )
    rep = shd.replicated(mesh)
    p_eval = jax.jit(
        functools.partial(evaluate_batch, model),
        in_shardings=(shardings.params, shardings.constants, shardings.puzzle_table, batch_sh),
        out_shardings=(b_sh, rep),
    )

    writer = _writer(workdir)
    step = int(state.batches)  # loop position in batches (pseudocode ACT: updates differ)
    progress = Progress(total_steps, step, verbose and jax.process_index() == 0)
    if verbose and step == 0:
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
        print(
            f"Training {mcfg.arch} ({n_params:,} parameters) for {total_steps} steps on "
            f"{mesh.shape['data']} device(s), global batch {tcfg.global_batch_size}; "
            f"work dir {workdir}",
            flush=True,
        )
        if writer:
            writer.add_scalar("num_params", n_params, 0)

    last_good = latest
    eval_metrics: dict = {}
    acc: dict = {}
    t_log, step_log = time.time(), step

    def save(step, metrics=None):
        ckpt.save(manager, step, state, data.get_state(), run_meta, metrics)

    budget = float(tcfg.time_budget_s or 0.0)
    # A time-budgeted decay: the horizon is measured once warm-up is over (the warm-up rate
    # does not depend on it) and re-measured after each evaluation; training stops there.
    timed_decay = tcfg.lr_decay_end == "time_budget"
    end = total_steps
    if timed_decay and int(state.horizon) < total_steps:
        end = int(state.horizon)  # measured by the process that started this run
    # Measured once per run: a resumed run keeps the horizon its first process set.
    calib_step = max(tcfg.lr_warmup_steps, step + 20) if end == total_steps else -1
    calibrated = False
    t_first = None  # the clock after this process's first (compiling) step
    step_first = step
    eval_s = None  # the last evaluation's seconds
    evals_total = 0.0  # seconds of evaluation since t_first
    if timed_decay:
        meta_eval = pipeline.load_metadata(config.data.path, config.data.eval_split)
        n_eval = meta_eval.total_groups * meta_eval.mean_puzzle_examples
        if config.data.eval_max_examples:
            n_eval = min(n_eval, int(config.data.eval_max_examples))
        n_eval = math.ceil(n_eval / eval_gbs) * eval_gbs

    def set_horizon(now: float) -> None:
        nonlocal state, end
        s_per_step = (now - t_first - evals_total) / max(step - step_first, 1)
        # Before the first evaluation its cost is guessed: a forward pass is about a third of
        # a train step's work per example and supervision step.
        guess = s_per_step * n_eval / tcfg.global_batch_size * mcfg.halt_max_steps / 3
        h = decay_horizon(
            step,
            now - t_start,
            budget,
            s_per_step,
            guess if eval_s is None else eval_s,
            eval_every,
            total_steps,
        )
        h = _agree(int(h))
        value = np.asarray(h, np.int32)
        horizon = jax.make_array_from_callback((), shardings.horizon, lambda _: value)
        state = state.replace(horizon=horizon)
        end = h
        progress.total = h
        if verbose and jax.process_index() == 0:
            progress.newline()
            print(
                f"Learning-rate decay ends at step {h} ({s_per_step:.3f} s/step measured, "
                f"{now - t_start:.0f} of {budget:.0f} s used).",
                flush=True,
            )

    while step < end:
        over = bool(budget) and clock() - t_start > budget
        if budget and jax.process_count() > 1:
            # Hosts' clocks differ, so they follow process 0; asking waits for the devices, so
            # only at the log steps, where the loop waits for them anyway (the stop comes at most
            # log_every - 1 steps late).
            over = _agree(over) if step % tcfg.log_every == 0 else False
        if over and step > int(latest or 0):
            progress.newline()
            if verbose and jax.process_index() == 0:
                print(f"Time budget of {budget:.0f} s reached at step {step}.", flush=True)
            if not eval_metrics or last_good != step:
                eval_metrics = run_eval(p_eval, state, config, mesh, tcfg.ema)
                if verbose and jax.process_index() == 0:
                    shown = " ".join(f"{k} {v:.4f}" for k, v in sorted(eval_metrics.items()))
                    print(f"eval @ step {step}: {shown}", flush=True)
                if writer:
                    for k, v in eval_metrics.items():
                        writer.add_scalar(f"eval/{k}", v, step)
                save(step, {"exact_accuracy": eval_metrics.get("exact_accuracy", 0.0)})
            break
        local = next(data)
        batch = shd.global_batch(local, mesh)
        state, metrics = p_train(state, batch)
        step += 1
        if timed_decay and t_first is None:
            jax.block_until_ready(metrics)
            t_first, step_first = clock(), step
        if timed_decay and step == calib_step and step < end:
            jax.block_until_ready(metrics)
            set_horizon(clock())
            calibrated = True
        for k, v in metrics.items():
            acc[k] = acc[k] + v if k in acc else v
        is_eval = step % eval_every == 0 or step == end
        is_ckpt = bool(config.checkpoint.every_steps) and step % config.checkpoint.every_steps == 0
        if step % tcfg.log_every == 0 or is_eval or is_ckpt or step == end:
            host = {k: float(v) for k, v in jax.device_get(acc).items()}
            n = step - step_log
            if not math.isfinite(host["loss"]):
                progress.newline()
                where = f"checkpoint {last_good}" if last_good is not None else "no checkpoint yet"
                raise TrainingStopped(
                    f"The loss became {host['loss']} between steps {step_log} and {step}; "
                    f"stopped with the last good {where} in {ckpt.checkpoint_dir(workdir)}."
                )
            count = max(host.get("count", 0.0), 1.0)
            train_m = {
                "loss": host["loss"] / n,
                "lr": host["lr"] / n,
                "grad_norm": host["grad_norm"] / n,
                "param_norm": host["param_norm"] / n,
            }
            for k in LOSS_KEYS:
                if k in host:
                    train_m[k] = host[k] / tcfg.global_batch_size / n
            for k in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps"):
                train_m[k] = host[k] / count
            dt = time.time() - t_log
            train_m["examples_per_second"] = n * tcfg.global_batch_size / max(dt, 1e-9)
            if writer:
                for k, v in train_m.items():
                    writer.add_scalar(f"train/{k}", v, step)
            progress.update(
                step,
                f"loss {train_m['loss']:.4f} acc {train_m['accuracy']:.3f} "
                f"exact {train_m['exact_accuracy']:.3f}",
            )
            acc, t_log, step_log = {}, time.time(), step
        if is_eval:
            t_eval = clock()
            eval_metrics = run_eval(p_eval, state, config, mesh, tcfg.ema)
            if timed_decay and calibrated and step < end:
                eval_s = clock() - t_eval
                evals_total += eval_s
                set_horizon(clock())
            progress.newline()
            if verbose and jax.process_index() == 0:
                shown = " ".join(f"{k} {v:.4f}" for k, v in sorted(eval_metrics.items()))
                print(f"eval @ step {step}: {shown}", flush=True)
            if writer:
                for k, v in eval_metrics.items():
                    writer.add_scalar(f"eval/{k}", v, step)
                writer.flush()
            save(step, {"exact_accuracy": eval_metrics.get("exact_accuracy", 0.0)})
            last_good = step
        elif is_ckpt:
            save(step)
            last_good = step
    progress.newline()
    if manager.latest_step() != step:
        save(step)
    manager.wait_until_finished()
    manager.close()
    if writer:
        writer.close()
    return RunResult(step, eval_metrics, ckpt.checkpoint_dir(workdir), clock() - t_start, state)


# ---- command line --------------------------------------------------------------------------

BAD_INPUT = (
    config_lib.ConfigError,
    shd.MeshError,
    DatasetError,
    ckpt.CheckpointError,
    FileNotFoundError,
)


def _unknown_override(argv) -> str | None:
    """The first ``--config.a.b`` override naming a key the config file does not have."""

    import ml_collections

    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if not path or not os.path.exists(path):
        return None
    cfg = config_lib.config_module(path).get_config()
    for a in argv:
        if a.startswith("--config."):
            key = a[len("--config.") :].split("=", 1)[0]
            node = cfg
            for part in key.split("."):
                if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                    return key
                node = node[part]
    return None


def _parse(argv):
    from absl import flags
    from ml_collections import config_flags

    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", flag_values=fv)
    flags.DEFINE_string("workdir", None, "Work dir for checkpoints and logs.", flag_values=fv)
    flags.DEFINE_bool("quiet", False, "No progress output.", flag_values=fv)
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if path and not os.path.exists(path):
        raise config_lib.ConfigError(f"Config file {path} does not exist.")
    try:
        fv(argv)
    except Exception as e:  # absl / ml_collections raise many types for bad flags
        unknown = _unknown_override(argv)
        if unknown:
            raise config_lib.ConfigError(f"Unknown config key {unknown} (not in {path}).") from e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise config_lib.ConfigError(f"Bad command line: {msg}") from e
    if fv.config is None:
        raise config_lib.ConfigError("--config=configs/<name>.py is required.")
    if not fv.workdir:
        raise config_lib.ConfigError("--workdir=DIR is required.")
    return fv.config, fv.workdir, fv.quiet


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    try:
        config, workdir, quiet = _parse(argv)
        result = run(config, workdir, verbose=not quiet)
    except BAD_INPUT as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingStopped as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = result.eval_metrics
    if not m and jax.process_index() == 0:
        print(
            f"Nothing to train: {workdir} already holds the finished run (step {result.step}); "
            f"score it with `python -m trm_jax.evaluate --workdir {workdir}`.",
            flush=True,
        )
    if m and jax.process_index() == 0:
        print(
            f"Done: step {result.step}, held-out exact accuracy {m.get('exact_accuracy', 0):.4f} "
            f"(token accuracy {m.get('accuracy', 0):.4f}, {int(m.get('count', 0))} puzzles) in "
            f"{result.seconds / 60:.1f} min; checkpoints in {result.checkpoint_dir}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
