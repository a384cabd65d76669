"""python -m trm_jax.adapt --workdir RUN --tasks FILE.json --out DIR [--mode embedding|full]
[--steps N | --time-budget-s S] [--solutions FILE.json]

Test-time adaptation of a trained ARC run to tasks it has never seen (docs/arc-adaptation.md).
TRM conditions every ARC prediction on one learned puzzle embedding per task (and per augmented
version of it); a new task only has the blank row. For every task of ``--tasks`` (a Kaggle file
``{task_id: {"train": [...], "test": [...]}}`` or one task ``{"train": ..., "test": ...}``):

1. its demonstration pairs are augmented exactly as the run's dataset was built
   (``data_gen.arc.write_dataset``: the original plus the dataset's ``num_aug`` dihedral/colour
   versions, its seed and translations, on its canvas), and its test inputs in every version
   form the test split, written to ``DIR/data`` with the run's identifiers first and one NEW
   identifier per task version after them;
2. a training run in ``DIR`` starts from RUN's weights with the puzzle table extended by those
   new rows (zero, as training initialises rows) and trains on all tasks' demonstrations together
   with the run's optimizers and train step (``trm_jax.train.run``): ``--mode embedding`` trains
   only the new rows (``train.freeze_network``: every network weight and every existing row stays
   bit-identical), ``--mode full`` the rows and the network;
3. the test inputs are predicted in every version, voted over the versions after undoing each
   augmentation (``ArcVoter``), and ``DIR/submission.json`` (Kaggle format: every task, two
   attempts per test input) written, with pass@1/2 in ``DIR/adapt_result.json`` when expected
   outputs are known (``--solutions`` ``{task_id: [grid, ...]}`` or ``output`` in the test pairs).

``DIR`` is an ordinary work dir (config.json, checkpoints): ``evaluate``, ``solve`` and
``trm_jax.load`` use it unchanged, and a killed adaptation resumes from its latest checkpoint when
started again with the same arguments (the result equals an uninterrupted one). ``--steps 0``
only predicts: the new rows are still zero, i.e. the blank-embedding baseline, voted.

Bad input (a ragged grid, a colour outside 0-9, a grid over the run's canvas, a task without
demonstrations or test inputs, a non-ARC run) stops with one sentence and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trm_jax import checkpoint as ckpt
from trm_jax import config as config_lib
from trm_jax import fileio
from trm_jax.arc_tasks import SUBSET, AdaptError, Tasks, read_tasks  # noqa: F401 (re-exported)
from trm_jax.data import dataset as ds
from trm_jax.guards import CliParser

MODES = ("embedding", "full")
DATA_DIR = "data"  # the adaptation dataset, inside --out
SETTINGS_FILE = "adapt.json"
RESULT_FILE = "adapt_result.json"
SUBMISSION_FILE = "submission.json"


@dataclasses.dataclass
class RunInfo:
    info: ckpt.CheckpointInfo
    identifiers: list[str]
    canvas: int
    num_aug: int
    seed: int


def read_run(workdir: str, step: int | None = None) -> RunInfo:
    """The run's checkpoint and the dataset facts adaptation repeats (canvas, augmentation)."""
    info = ckpt.locate(workdir, step)
    if info.task != "arc" or not info.model_config.puzzle_len:
        raise AdaptError(
            f"{info.workdir} is not an ARC run with puzzle embeddings (task {info.task}); "
            "adaptation learns new puzzle-embedding rows."
        )
    data = info.dataset
    try:
        meta = ds.load_split(data, "train").metadata
        identifiers = ds.load_identifiers(data)
    except (ValueError, OSError) as e:
        raise AdaptError(f"the run's dataset {data} cannot be read ({e}).") from None
    rows = info.meta.get("table_rows")
    if rows is not None and len(identifiers) > int(rows):
        raise AdaptError(
            f"the run's dataset {data} has {len(identifiers)} puzzle identifiers, more than the "
            f"{rows} rows of the checkpoint's puzzle table: it was rebuilt or replaced after "
            "training; rebuild it with the run's command or adapt another run."
        )
    aug = meta.get("augmentation") or {}
    build = meta.get("arc_build") or {}
    num_aug = aug.get("num_aug", build.get("num_aug"))
    seed = aug.get("seed", build.get("seed"))
    if num_aug is None or seed is None:
        raise AdaptError(
            f"the run's dataset {data} does not record its augmentation (num_aug and seed), so "
            "adaptation cannot repeat it."
        )
    return RunInfo(info, identifiers, ds.arc_canvas_side(meta), int(num_aug), int(seed))


# --------------------------------------------------------------------------------------------
# Adapting


@dataclasses.dataclass
class Options:
    mode: str = "embedding"
    steps: int | None = None  # None with time_budget_s
    time_budget_s: float = 0.0
    lr: float | None = None  # None: the run's
    puzzle_emb_lr: float | None = None
    warmup_steps: int | None = None  # None: the run's, at most a tenth of --steps
    checkpoint_every: int = 0  # 0: about ten checkpoints over --steps
    batch_size: int | None = None  # None: the run's global batch
    num_aug: int | None = None  # None: the run's dataset's augmented versions per task
    seed: int | None = None  # None: the run's train.seed (batch order, exploration draws)
    quiet: bool = False


def _settings(run: RunInfo, tasks_digest: str, opts: Options) -> dict:
    return {
        "run": str(run.info.workdir),
        "run_step": run.info.step,
        "tasks_sha256": tasks_digest,
        # num_aug and seed only when given: adaptations started before them resume unchanged.
        "options": {
            k: v
            for k, v in (dataclasses.asdict(opts) | {"quiet": None}).items()
            if not (k in ("num_aug", "seed") and v is None)
        },
    }


def _digest(tasks: Tasks) -> str:
    return hashlib.sha256(json.dumps(tasks.test_puzzles, sort_keys=True).encode()).hexdigest()


def _config(run: RunInfo, out: Path, per_epoch: int, opts: Options):
    """The run's config, pointed at the adaptation data, with the adaptation's schedule."""
    c = config_lib.from_json(config_lib.to_json(run.info.config))
    t = c.train
    c.data.path = str(out / DATA_DIR)
    c.data.eval_split = "test"
    c.data.eval_max_examples = 0
    if opts.batch_size:
        c.data.global_batch_size = int(opts.batch_size)
    gbs = int(c.data.global_batch_size)
    if opts.lr is not None:
        t.lr = float(opts.lr)
    if opts.puzzle_emb_lr is not None:
        t.puzzle_emb_lr = float(opts.puzzle_emb_lr)
    if opts.seed is not None:
        t.seed = int(opts.seed)
    t.freeze_network = opts.mode == "embedding"
    # The adapted weights start from the ones the run evaluates with; an average at 0.999 over a
    # few hundred steps would still be those, so the adapted run evaluates its raw weights.
    t.ema = False
    if opts.steps is not None:
        t.max_steps = int(opts.steps)
        t.time_budget_s = 0.0
        t.lr_decay_end = "steps"
        t.epochs = max(1, math.ceil(max(opts.steps, 1) * gbs / max(per_epoch, 1)))
        if opts.warmup_steps is None:
            t.lr_warmup_steps = min(int(t.lr_warmup_steps), opts.steps // 10)
        else:
            t.lr_warmup_steps = int(opts.warmup_steps)
        every = opts.checkpoint_every or max(1, opts.steps // 10)
    else:
        t.max_steps = 0
        t.time_budget_s = float(opts.time_budget_s)
        t.lr_decay_end = "time_budget"
        t.epochs = 10000
        if opts.warmup_steps is not None:
            t.lr_warmup_steps = int(opts.warmup_steps)
        every = opts.checkpoint_every or 50
    t.eval_interval = t.epochs  # one data iteration; the only evaluation is the final one
    c.checkpoint.every_steps = int(every)
    c.checkpoint.keep = 2
    c.checkpoint.keep_best = False
    return c


def _initial_checkpoint(config, run: RunInfo, out: Path) -> None:
    """Step 0 of the adaptation in ``out``: RUN's weights, its table extended by zero rows."""
    import jax  # lazy: keeps `--help` and input errors fast
    import jax.numpy as jnp

    from trm_jax import sharding as shd
    from trm_jax import train
    from trm_jax.data import pipeline
    from trm_jax.model.trm import TRMModel
    from trm_jax.steps import build_steps, make_setup

    meta = pipeline.load_metadata(config.data.path, "train")
    tcfg = config_lib.train_config(config)
    mcfg = config_lib.model_config(config, meta)
    mesh = shd.make_mesh(config.mesh.data)
    shd.check_batch(tcfg.global_batch_size, mesh)
    total_steps = train._total_steps(config, meta)
    steps = build_steps(make_setup(TRMModel(mcfg), tcfg, total_steps), mesh)
    restored = ckpt.restore_weights(run.info, TRMModel(run.info.model_config))
    # The weights the run evaluates with become both the trained and the averaged weights.
    use_ema = bool(run.info.config.train.get("ema", False))
    weights = restored["ema_params"] if use_ema else restored["params"]
    old = np.asarray(jax.device_get(restored["puzzle_table"]))
    n_old = len(run.identifiers)
    table = np.zeros(steps.abstract.puzzle_table.shape, np.float32)
    table[:n_old] = old[:n_old]

    state = steps.init(jax.random.key(tcfg.seed))
    sh = steps.state

    def put(tree, shardings):
        return jax.tree.map(lambda x, s: jax.device_put(jnp.asarray(x), s), tree, shardings)

    state = state.replace(
        params=put(weights, sh.params),
        ema_params=put(weights, sh.ema_params),
        constants=put(restored["constants"], sh.constants),
        puzzle_table=jax.device_put(jnp.asarray(table), sh.puzzle_table),
    )
    # Rebuild the optimizer state around the loaded weights (its layout does not depend on them).
    init_opt = jax.jit(lambda p: make_setup(TRMModel(mcfg), tcfg, total_steps).tx(tcfg.lr).init(p))
    state = state.replace(opt_state=init_opt(state.params))
    run_meta = {
        "model": dataclasses.asdict(mcfg),
        "global_batch_size": tcfg.global_batch_size,
        "table_rows": steps.table_rows,
        "total_steps": total_steps,
        "dataset": os.path.abspath(config.data.path),
        "adapted_from": {"workdir": str(run.info.workdir), "step": run.info.step},
    }
    manager = ckpt.make_manager(out, config.checkpoint.keep, config.checkpoint.keep_best)
    ckpt.save(manager, 0, state, None, run_meta)
    manager.close()


def _build_data(run: RunInfo, tasks: Tasks, out: Path, num_aug: int | None = None) -> None:
    """Writes ``out/data``: the tasks' versions (the run's ``num_aug`` per task unless given),
    numbered after the run's identifiers."""
    from data_gen import arc

    collide = sorted(set(tasks.puzzles) & {arc_name(n) for n in run.identifiers})
    if collide:
        raise AdaptError(
            f"task {collide[0]} is already one of the run's puzzles ({run.info.dataset}/"
            "identifiers.json); adapt takes tasks the run was not trained on."
        )
    num_aug = run.num_aug if num_aug is None else num_aug
    arc.write_dataset(
        out / DATA_DIR,
        {SUBSET: tasks.puzzles},
        test_set=SUBSET,
        num_aug=num_aug,
        seed=run.seed,
        canvas=run.canvas,
        build_info={"adapted_from": str(run.info.workdir), "num_aug": num_aug},
        extra_files={"test_puzzles.json": tasks.test_puzzles},
        base_identifiers=run.identifiers,
        log=lambda _: None,
    )


def arc_name(identifier: str) -> str:
    return identifier.split("|||", 1)[0]


def adapt(
    workdir: str,
    tasks_path: str,
    out: str,
    opts: Options,
    solutions: str | None = None,
    step: int | None = None,
):
    """Adapt, predict and score; returns the result dict (also in ``out/adapt_result.json``)."""
    if opts.mode not in MODES:
        raise AdaptError(f"--mode must be one of {', '.join(MODES)}, got {opts.mode!r}.")
    if opts.steps is not None and opts.steps < 0:
        raise AdaptError(f"--steps must be >= 0, got {opts.steps}.")
    if opts.num_aug is not None and opts.num_aug < 0:
        raise AdaptError(f"--num-aug must be >= 0, got {opts.num_aug}.")
    if opts.steps is None and not opts.time_budget_s > 0:
        raise AdaptError("give --steps N or a positive --time-budget-s S.")
    run = read_run(workdir, step)
    tasks = read_tasks(tasks_path, run.canvas, solutions)
    out_p = Path(out).absolute()
    if out_p.resolve() == run.info.workdir.resolve():
        raise AdaptError(f"--out {out} is the run's own work dir; choose a new directory.")
    settings = _settings(run, _digest(tasks), opts)
    settings_path = out_p / SETTINGS_FILE
    t0 = time.monotonic()
    if settings_path.is_file():
        if json.loads(settings_path.read_text()) != settings:
            raise AdaptError(
                f"{out} holds an adaptation with other tasks, run or options ({settings_path}); "
                "choose a new --out or repeat the same command to resume it."
            )
    elif out_p.exists() and any(out_p.iterdir()):
        raise AdaptError(f"--out {out} exists and is not an adaptation; choose a new directory.")
    out_p.mkdir(parents=True, exist_ok=True)
    say = (lambda _: None) if opts.quiet else (lambda m: print(m, flush=True))
    if not (out_p / DATA_DIR / "test" / "dataset.json").is_file():
        _build_data(run, tasks, out_p, opts.num_aug)
    from trm_jax.data import pipeline

    meta = pipeline.load_metadata(str(out_p / DATA_DIR), "train")
    n_examples = int(meta.num_examples)
    per_epoch = int(round(meta.total_groups * meta.mean_puzzle_examples))  # train's epoch
    fileio.write_json(settings_path, settings)
    config = _config(run, out_p, per_epoch, opts)
    n_new = len(ds.load_identifiers(out_p / DATA_DIR)) - len(run.identifiers)
    say(
        f"Adapting {run.info.workdir} (step {run.info.step}) to {len(tasks.puzzles)} task(s): "
        f"{n_new} new embedding rows, {n_examples} training examples, mode {opts.mode}."
    )
    if not ckpt._steps_in(out_p / ckpt.CHECKPOINT_DIR):
        _initial_checkpoint(config, run, out_p)
    ckpt.write_config(out_p, config_lib.to_json(config))
    t_train = time.monotonic()
    if opts.steps != 0:
        from trm_jax import train

        train.run(config, str(out_p), verbose=not opts.quiet)
    train_s = time.monotonic() - t_train
    result = predict(out_p, tasks, config)
    result.update(
        mode=opts.mode,
        tasks=len(tasks.puzzles),
        new_rows=n_new,
        adapt_seconds=round(train_s, 1),
        total_seconds=round(time.monotonic() - t0, 1),
    )
    fileio.write_json(out_p / RESULT_FILE, result)
    return result


def predict(out: Path, tasks: Tasks, config) -> dict:
    """Vote the adapted run's predictions of every test-input version; write the submission."""
    from trm_jax import evaluate as ev
    from trm_jax import inference as inf
    from trm_jax.arc_scoring import ArcVoter

    trm = inf.load(out)
    data = out / DATA_DIR
    voter = ArcVoter(ds.load_identifiers(data))
    batch = int(config.data.get("eval_global_batch_size") or config.data.global_batch_size)
    split = ev.evaluate_split(trm, str(data), "test", batch_size=batch, voter=voter)
    metrics, submission = voter.result(tasks.test_puzzles, pass_ks=(1, 2), submission_k=2)
    for attempts in submission.values():  # a prediction with no colour cell crops to nothing
        for pair in attempts:
            pair.update({k: [[0]] for k, g in pair.items() if not g or not g[0]})
    fileio.write_json(out / SUBMISSION_FILE, submission, indent=None)
    result = {"step": trm.step, "submission": str(out / SUBMISSION_FILE)}
    if tasks.scored:
        result.update(metrics)
    result["test_token_accuracy"] = split.metrics.get("accuracy")
    return result


# --------------------------------------------------------------------------------------------
# solve --adapt


def adapt_for_solve(
    workdir: str, tasks_path: str, steps: int = 100, step: int | None = None
) -> str:
    """Adapts the run (``--mode full``, ``steps`` steps) to the tasks of one file in a new
    temporary directory, for ``solve --adapt``; returns the adapted work dir."""
    out = tempfile.mkdtemp(prefix="trm-adapt-")
    adapt(workdir, tasks_path, out, Options(mode="full", steps=steps, quiet=True), step=step)
    return out


# --------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(
        prog="python -m trm_jax.adapt",
        description="Adapt a trained ARC run to new tasks (new puzzle-embedding rows) and "
        "write a Kaggle submission.",
    )
    p.add_argument("--workdir", required=True, help="the trained run's work dir")
    p.add_argument("--tasks", required=True, help="Kaggle ARC challenges JSON (or one task)")
    p.add_argument("--out", required=True, help="work dir of the adapted run (new or resumed)")
    p.add_argument("--mode", choices=MODES, default="embedding")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps (0: predict only)")
    budget.add_argument("--time-budget-s", type=float, help="train for this many seconds")
    p.add_argument("--solutions", default=None, help="Kaggle solutions JSON for pass@1/2")
    p.add_argument("--lr", type=float, default=None, help="network rate (default: the run's)")
    p.add_argument(
        "--puzzle-emb-lr", type=float, default=None, help="embedding rate (default: the run's)"
    )
    p.add_argument(
        "--warmup-steps", type=int, default=None, help="default: the run's, <= steps / 10"
    )
    p.add_argument("--checkpoint-every", type=int, default=0, help="default: steps / 10")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's")
    p.add_argument(
        "--num-aug",
        type=int,
        default=None,
        help="augmented versions per task, each with its own new row (default: the run's)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the batch order and exploration (default: the run's train.seed)",
    )
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = Options(
        mode=args.mode,
        steps=args.steps,
        time_budget_s=args.time_budget_s or 0.0,
        lr=args.lr,
        puzzle_emb_lr=args.puzzle_emb_lr,
        warmup_steps=args.warmup_steps,
        checkpoint_every=args.checkpoint_every,
        batch_size=args.batch_size,
        num_aug=args.num_aug,
        seed=args.seed,
        quiet=args.quiet,
    )
    from trm_jax.train_cli import BAD_INPUT

    try:
        result = adapt(args.workdir, args.tasks, args.out, opts, args.solutions)
    except (AdaptError, *BAD_INPUT) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = ", ".join(f"{k} {result[k]:.4f}" for k in ("ARC/pass@1", "ARC/pass@2") if k in result)
    print(
        f"Adapted {result['tasks']} task(s) ({result['mode']}, {result['new_rows']} new rows) in "
        f"{result['adapt_seconds']:.0f} s; submission {result['submission']}"
        + (f"; {shown}" if shown else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
