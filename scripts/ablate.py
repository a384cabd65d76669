"""Train TRM and its variants on the same Sudoku data with the same budget; table and chart.

    .venv/bin/python scripts/ablate.py [--variants trm-mlp,hrm,...] [--out runs/ablation]
        [--data data/sudoku-cpu] [--budget-steps N | --budget-minutes M | --budget-s S]
        [--hidden 64] [--heads H] [--cycles 3,6] [--batch 32] [--halt-max-steps 16]
        [--lr 3e-3] [--warmup-steps W] [--lr-min-ratio 0.1] [--ema] [--dtype D] [--remat R]
        [--eval-examples 200] [--dry-run] [--estimate]

Variants (each a config override on top of one base, the setup of configs/sudoku_mlp.py with the
size flags applied; the overrides live in the config files named, so ``python -m trm_jax.train``
on that file trains the same model at paper size):

    trm-mlp         TRM, token-mixing MLP (configs/sudoku_mlp.py)
    trm-att         TRM, self-attention + RoPE (configs/sudoku_att.py)
    hrm             HRM: two 2x-deep nets, T, n <= 2, one-step gradient (configs/sudoku_hrm.py)
    single-z        one latent (configs/sudoku_singlez.py)
    multi-z         z_H plus n latents (configs/sudoku_hier6.py)
    multi-z-mean    multi-z with model.latent_sum = "mean" (configs/sudoku_hier6_mean.py)
    4-layers        2x layers, n halved (configs/sudoku_4layers.py)
    transformer     one pass of a 4x-deep attention stack per step (configs/sudoku_transformer.py)
    pseudocode-act  the paper-pseudocode deep supervision (configs/sudoku_pseudocode.py)

The dataset is built with ``data_gen.sudoku build`` when ``--data`` does not exist. Every variant
trains on it from the same seed with the same budget, counted in optimizer updates (= supervision
steps): ``--budget-steps N`` gives each N updates (the pseudocode variant takes N / halt_max_steps
batches of up to halt_max_steps updates each); ``--budget-minutes M`` first times a few steps of
each variant and gives it as many as fit in M minutes (compilation and evaluation not counted),
with the main job's cosine decay to ``--lr-min-ratio`` x lr ending at the last of them (the run is
then step-limited: its result does not depend on later load);
``--budget-s S`` instead gives each variant S seconds of wall clock (compilation included), with
the main job's schedule fitted to it: ``train.time_budget_s = S``, ``train.lr_decay_end =
"time_budget"`` (the cosine decay, to ``--lr-min-ratio`` x lr, default 0.1, ends where the budget
does) and ``--warmup-steps`` (default 30) warm-up steps.
Each is then scored on the same held-out puzzles (the first ``--eval-examples`` of the test split,
default 200, 0: all) with fixed halting (all halt_max_steps steps, the reference's metric) and
adaptive halting (first step where the variant's training halting rule fires: q_halt > 0, or
q_halt > q_continue for HRM and the transformer; giving the mean number of ACT steps used).

Written to ``--out``: ``<variant>/run`` (the trm_jax.train work dir), ``<variant>/plan.json``
(the budget it got), ``<variant>/result.json``; ``ablation.md`` (the table), ``ablation.json`` and
``ablation.png`` (exact and token accuracy; the table ranks the variants by exact accuracy, then
token accuracy). A variant with a result for the same settings is
skipped, an interrupted one resumes from its latest checkpoint; results for other settings in the
same ``--out`` stop the run (use another ``--out``). ``--dry-run`` prints the plan (parameters,
effective depth, budget) without training; ``--estimate`` also times a few training steps and one
evaluation batch of each variant and projects the wall time of the whole run.

The defaults are the CPU scale (hidden 64, batch 32, 300 updates each, 200 test puzzles; about
half an hour for all eight variants on 2 idle cores, measured results in docs/ablation-cpu.md).
The learning-rate warm-up defaults to the first 10% of each variant's training batches (the
schedule counts batches, see trm_jax.steps.Setup). Paper scale
on a GPU (reference §7; docs/ablation.md):
``--data data/sudoku-extreme-1k --hidden 512 --heads 8 --cycles 3,6 --batch 768 --lr 1e-4
--warmup-steps 2000 --ema --budget-steps 65104 --eval-examples 0``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from data_gen import sudoku as gen  # noqa: E402
from trm_jax import config as config_lib  # noqa: E402
from trm_jax import evaluate as ev  # noqa: E402
from trm_jax import inference, train  # noqa: E402
from trm_jax import sharding as shd  # noqa: E402
from trm_jax.checkpoint import CheckpointError  # noqa: E402
from trm_jax.data import pipeline  # noqa: E402
from trm_jax.data.dataset import DatasetError  # noqa: E402
from trm_jax.fileio import write_json, write_text  # noqa: E402
from trm_jax.guards import CliParser  # noqa: E402
from trm_jax.model.trm import TRMModel, init_variables  # noqa: E402
from trm_jax.steps import build_steps, make_setup  # noqa: E402

VARIANTS = (
    "trm-mlp",
    "trm-att",
    "hrm",
    "single-z",
    "multi-z",
    "multi-z-mean",
    "4-layers",
    "transformer",
    "pseudocode-act",
)
# Variants whose override is the ``variant(c)`` function of a config file.
VARIANT_FILES = {
    "hrm": "sudoku_hrm.py",
    "single-z": "sudoku_singlez.py",
    "multi-z": "sudoku_hier6.py",
    "multi-z-mean": "sudoku_hier6_mean.py",
    "4-layers": "sudoku_4layers.py",
    "transformer": "sudoku_transformer.py",
    "pseudocode-act": "sudoku_pseudocode.py",
}
BASE_FILE = "sudoku_mlp.py"
# Sudoku shapes (vocab, seq_len, puzzle ids) for a dry run before the dataset exists.
SUDOKU_SHAPES = (11, 81, 1)
TIMED_STEPS = 3


class AblationError(ValueError):
    """Settings or files that stop the run (one sentence, exit status 2)."""


# --------------------------------------------------------------------------------------------
# Configs


def _config_module(filename: str):
    return config_lib.config_module(REPO / "configs" / filename)


def _trm_att(c):
    """TRM with self-attention and RoPE, as configs/sudoku_att.py."""
    c.model.mlp_t = False
    c.model.pos_encodings = "rope"
    return c


def apply_variant(c, name: str):
    """``c`` (the base config, sizes set) with variant ``name``'s overrides applied."""
    if name == "trm-mlp":
        return c
    if name == "trm-att":
        return _trm_att(c)
    return _config_module(VARIANT_FILES[name]).variant(c)


def parse_cycles(text: str) -> tuple[int, int]:
    try:
        h, l = (int(x) for x in text.split(","))
    except ValueError:
        raise AblationError(f"--cycles takes H,L like 3,6, got {text!r}.") from None
    if h < 1 or l < 1:
        raise AblationError(f"--cycles needs H, L >= 1, got {text!r}.")
    return h, l


def base_config(args):
    """configs/sudoku_mlp.py with the common flags applied: every variant starts from this."""
    c = _config_module(BASE_FILE).get_config()
    h, l = parse_cycles(args.cycles)
    c.data.path = str(args.data)
    c.data.global_batch_size = args.batch
    c.model.hidden_size = args.hidden
    c.model.puzzle_emb_ndim = args.hidden
    c.model.num_heads = args.heads or max(2, args.hidden // 64)
    c.model.H_cycles = h
    c.model.L_cycles = l
    c.model.halt_max_steps = args.halt_max_steps
    if args.dtype:
        c.model.forward_dtype = args.dtype
    if args.remat:
        c.model.remat = args.remat
    c.train.seed = args.seed
    c.train.lr = args.lr
    c.train.puzzle_emb_lr = args.lr
    c.train.ema = args.ema
    return c


def variant_config(args, name: str):
    return apply_variant(base_config(args), name)


def budget_updates(args) -> int | None:
    timed = args.budget_minutes is not None or args.budget_s is not None
    return None if timed else args.budget_steps


# --budget-s: the step cap (the clock stops the run first: a CPU variant does hundreds of steps in
# 5 minutes; the cap keeps the sampler's one iteration of epochs small) and the default warm-up.
BUDGET_S_MAX_STEPS = 20_000
BUDGET_S_WARMUP = 30


def batches_for_steps(c, updates: int) -> int:
    """Training batches (trm_jax.train steps) that give ``updates`` optimizer updates."""
    if c.train.deep_supervision == "pseudocode":
        return max(1, updates // c.model.halt_max_steps)
    return max(1, updates)


def updates_per_batch(c) -> int:
    return c.model.halt_max_steps if c.train.deep_supervision == "pseudocode" else 1


def finalize(c, batches: int, meta, args):
    """The budget, one evaluation at the end and checkpointing, on a variant's config."""
    examples = meta.total_groups * meta.mean_puzzle_examples
    epochs = max(1, math.ceil(batches * c.data.global_batch_size / max(examples, 1)))
    c.train.max_steps = batches
    c.train.epochs = epochs
    c.train.eval_interval = epochs
    # The schedule counts batches (trm_jax.steps.Setup): warm up over the first 10% of them.
    warmup = args.warmup_steps
    c.train.lr_warmup_steps = round(0.1 * batches) if warmup is None else warmup
    if getattr(args, "budget_s", None) is not None:
        # The main job's schedule: the decay ends where this variant's clock budget does.
        c.train.time_budget_s = float(args.budget_s)
        c.train.lr_decay_end = "time_budget"
        c.train.lr_min_ratio = args.lr_min_ratio
        c.train.lr_warmup_steps = BUDGET_S_WARMUP if warmup is None else warmup
    elif getattr(args, "budget_minutes", None) is not None:
        # Steps fitted to the minutes by timing: the main job's decay, ending at the last step.
        c.train.lr_decay_end = "steps"
        c.train.lr_min_ratio = args.lr_min_ratio
    c.train.log_every = max(1, min(50, batches // 10))
    # trm_jax.train evaluates once at the end; keep that to one batch (scored below instead).
    c.data.eval_global_batch_size = c.data.global_batch_size
    c.data.eval_max_examples = 1
    c.checkpoint.every_steps = args.checkpoint_every
    c.checkpoint.keep = 1
    return c


def model_config(c, meta):
    return config_lib.model_config(c, meta)


def count_params(mcfg) -> int:
    shapes = jax.eval_shape(lambda: init_variables(TRMModel(mcfg), jax.random.key(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


class _Shapes:
    """Metadata stand-in (Sudoku shapes) when the dataset is not built yet."""

    vocab_size, seq_len, num_puzzle_identifiers = SUDOKU_SHAPES
    total_groups, mean_puzzle_examples, num_examples = 0, 1.0, 0


def plan(args, meta=None) -> list[dict]:
    """One entry per selected variant: name, config, model config, parameters, depth."""
    meta = meta or _Shapes()
    out = []
    for name in args.variants:
        c = variant_config(args, name)
        try:
            config_lib.train_config(c)
            mcfg = model_config(c, meta)
        except config_lib.ConfigError as e:
            raise AblationError(f"variant {name}: {e}") from None
        try:
            params = count_params(mcfg)
        except ValueError as e:  # shapes the model cannot take (e.g. an odd RoPE head width)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AblationError(
                f"variant {name} cannot be built with hidden {mcfg.hidden_size} and "
                f"{mcfg.num_heads} heads ({msg}); try other --hidden / --heads."
            ) from None
        out.append(
            {
                "variant": name,
                "config": c,
                "model": mcfg,
                "params": params,
                "depth": mcfg.effective_depth,
            }
        )
    return out


def settings_key(c, args) -> dict:
    """What a cached result must match to be reused."""
    if args.budget_s is not None:
        budget = {"seconds": args.budget_s, "lr_min_ratio": args.lr_min_ratio}
    elif args.budget_minutes is not None:
        budget = {"minutes": args.budget_minutes, "lr_min_ratio": args.lr_min_ratio}
    else:
        budget = {"steps": args.budget_steps}
    return {
        "config": json.loads(config_lib.to_json(c)),
        "budget": budget,
        "warmup_steps": args.warmup_steps,
        "eval_examples": args.eval_examples,
        "data": os.path.abspath(args.data),
    }


# --------------------------------------------------------------------------------------------
# Data


def ensure_data(args) -> None:
    """Generate the Sudoku dataset (as ``data_gen.sudoku build`` would) when it is missing."""
    if Path(args.data).is_dir():
        return
    print(
        f"Building {args.data}: {args.num_train} train / {args.num_test} test generated puzzles, "
        f"{args.givens} givens, seed {args.data_seed}",
        flush=True,
    )
    if not 17 <= args.givens <= 81 or args.num_train < 1 or args.num_test < 1:
        raise AblationError("expected 17 <= --givens <= 81, --num-train >= 1, --num-test >= 1.")
    spec = gen.GenSpec(min_givens=args.givens, max_givens=args.givens)
    total = args.num_train + args.num_test
    try:
        recs, used = gen.generate_many(args.data_seed, total, spec, args.workers, args.quiet)
    except gen.InputError as e:
        raise AblationError(f"building the dataset {args.data} failed: {e}.") from None

    def records(rs: list) -> gen.Records:
        return gen.Records([r[0] for r in rs], [r[1] for r in rs], [r[2] for r in rs])

    metadata = {
        "source": "generated",
        "generator_version": gen.GENERATOR_VERSION,
        "seed": args.data_seed,
        "filters": {
            "min_givens": args.givens,
            "max_givens": args.givens,
            "min_rating": spec.min_rating,
            "max_rating": spec.max_rating,
        },
        "rating_definition": "guesses (branching decisions) of data_gen.sudoku's solver",
        "materialize": 0,
        "counts": {
            "train": args.num_train,
            "test": args.num_test,
            "indices_used": used,
            "attempts": sum(r[4] for r in recs),
        },
    }
    train_recs, test_recs = records(recs[: args.num_train]), records(recs[args.num_train :])
    gen.write_dataset(
        str(args.data), train_recs, test_recs, materialize=0, seed=args.data_seed, metadata=metadata
    )


def load_meta(args, split: str = "train"):
    return pipeline.load_metadata(str(args.data), split)


# --------------------------------------------------------------------------------------------
# Timing (budget by wall clock, --estimate)


def time_variant(c, meta, eval_rows: int = 0) -> dict:
    """Compile and time a few training steps of ``c`` as trm_jax.train runs them (same jit,
    shardings and data): 3 steps, or 1 batch for the pseudocode form (up to N_sup updates each).
    With ``eval_rows``, also one evaluation batch of that many rows (all N_sup steps).

    Returns seconds: ``compile`` (initialisation and compilation), ``step`` (per training
    batch), and ``eval_compile`` / ``eval_example`` (per example scored) when asked; ``step_cpu``
    and ``eval_example_cpu`` are the process CPU time of the same calls (steadier than wall time
    when other jobs share the cores).
    """
    tcfg = config_lib.train_config(c)
    mcfg = model_config(c, meta)
    mesh = shd.make_mesh(c.mesh.data)
    shd.check_batch(tcfg.global_batch_size, mesh)
    model = TRMModel(mcfg)
    steps = build_steps(make_setup(model, tcfg, max(1, c.train.max_steps or 1000)), mesh)
    n = max(1, TIMED_STEPS // updates_per_batch(c))
    data = pipeline.train_iterator(
        c.data.path, global_batch_size=tcfg.global_batch_size, seed=tcfg.seed, prefetch=0
    )
    batches = [shd.global_batch(next(data), mesh) for _ in range(n + 1)]
    t0 = time.perf_counter()
    state = steps.init(jax.random.key(tcfg.seed))
    state, _ = steps.train(state, batches[0])
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches[1:]:
        state, metrics = steps.train(state, b)
    jax.block_until_ready((state, metrics))
    out = {"step": (time.perf_counter() - t0) / n, "step_cpu": (time.process_time() - c0) / n}
    out["compile"] = max(first - out["step"], 0.0)
    if eval_rows:
        shd.check_batch(eval_rows, mesh)
        local = next(pipeline.eval_batches(c.data.path, global_batch_size=eval_rows))
        batch = shd.global_batch(
            {k: local[k] for k in ("inputs", "labels", "puzzle_identifiers")}, mesh
        )
        args = (state.params, state.constants, state.puzzle_table, batch)
        t0 = time.perf_counter()
        jax.block_until_ready(steps.evaluate(*args))
        first = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(steps.evaluate(*args))
        run = time.perf_counter() - t0
        out["eval_example"] = run / eval_rows
        out["eval_example_cpu"] = (time.process_time() - c0) / eval_rows
        out["eval_compile"] = max(first - run, 0.0)
    return out


def projected_seconds(timing: dict, batches: int, c, eval_examples: int, eval_batch: int):
    """Wall time of one variant: compile, training, trm_jax.train's one-batch evaluation, and
    the fixed + adaptive scoring of ``eval_examples`` (three evaluation compilations)."""
    scored = 2 * math.ceil(eval_examples / eval_batch) * eval_batch + c.data.global_batch_size
    return (
        timing["compile"]
        + batches * timing["step"]
        + 3 * timing["eval_compile"]
        + scored * timing["eval_example"]
    )


# --------------------------------------------------------------------------------------------
# Training and scoring one variant


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AblationError(
            f"{path} cannot be read ({e}); delete it to redo the variant."
        ) from None


def _check_key(path: Path, key: dict, name: str, out: Path) -> dict | None:
    if not path.is_file():
        return None
    saved = _read_json(path)
    if saved.get("key") != key:
        raise AblationError(
            f"{path} belongs to other settings for variant {name}; use another --out than {out} "
            f"or delete {path.parent} to redo it."
        )
    return saved


def eval_batch_size(args, meta_test) -> int:
    n = args.eval_examples or meta_test.num_examples
    size = args.eval_batch or min(256, max(n, 1))
    devices = jax.device_count()
    return -(-size // devices) * devices


def run_variant(entry: dict, args, meta, meta_test, index: int, total: int) -> dict:
    """Train (or resume) and score one variant; returns its result record (also on disk)."""
    name, c = entry["variant"], entry["config"]
    out = Path(args.out)
    vdir = out / name
    key = settings_key(c, args)
    tag = f"[{index}/{total}] {name}"
    cached = _check_key(vdir / "result.json", key, name, out)
    if cached is not None:
        m = cached.get("fixed", {})
        print(
            f"{tag}: cached result in {vdir} (exact {m.get('exact_accuracy', float('nan')):.4f})",
            flush=True,
        )
        return cached
    planned = _check_key(vdir / "plan.json", key, name, out)
    if planned is not None:
        batches = int(planned["batches"])
    else:
        if args.budget_s is not None:
            timing, batches = None, BUDGET_S_MAX_STEPS  # the clock stops the run
        elif args.budget_minutes is not None:
            print(f"{tag}: timing {TIMED_STEPS} training steps for the budget ...", flush=True)
            timing = time_variant(finalize(c.copy_and_resolve_references(), 1000, meta, args), meta)
            batches = max(1, int(args.budget_minutes * 60 / timing["step"]))
            print(
                f"{tag}: {timing['step']:.3f} s/step (compile {timing['compile']:.1f} s): "
                f"{batches} steps fit in {args.budget_minutes:g} min",
                flush=True,
            )
        else:
            timing = None
            batches = batches_for_steps(c, args.budget_steps)
        write_json(vdir / "plan.json", {"key": key, "batches": batches, "timing": timing})
    c = finalize(c, batches, meta, args)
    mcfg = entry["model"]
    per = updates_per_batch(c)
    what = f"{batches} steps" if per == 1 else f"{batches} batch(es) x <= {per} updates"
    if args.budget_s is not None:
        what = f"{args.budget_s:g} s of training (lr decay fitted to it)"
    print(
        f"{tag}: {mcfg.arch}, {entry['params']:,} parameters, depth {entry['depth']} per "
        f"supervision step, {what}; work dir {vdir / 'run'}",
        flush=True,
    )
    error = None
    try:
        res = train.run(c, str(vdir / "run"), verbose=not args.quiet)
        updates, seconds = int(res.state.step), res.seconds
        if args.budget_s is not None:
            batches = int(res.state.batches)  # what the clock allowed
    except train.TrainingStopped as e:
        error, updates, seconds = str(e), None, None
        print(f"{tag}: {e}", flush=True)
    record = {
        "variant": name,
        "key": key,
        "arch": mcfg.arch,
        "params": entry["params"],
        "effective_depth": entry["depth"],
        "batches": batches,
        "updates": updates,
        "train_seconds": seconds,
        "error": error,
        "workdir": str(vdir / "run"),
    }
    if error is None:
        trm = inference.load(vdir / "run")
        bs = eval_batch_size(args, meta_test)
        t0 = time.perf_counter()
        for mode in ("fixed", "adaptive"):
            r = ev.evaluate_split(
                trm,
                str(args.data),
                "test",
                adaptive=mode == "adaptive",
                batch_size=bs,
                max_examples=args.eval_examples,
                progress_label=None if args.quiet else f"{tag} eval {mode}",
            )
            record[mode] = r.metrics
            record["eval_examples"] = r.examples
        record["eval_seconds"] = time.perf_counter() - t0
        f, a = record["fixed"], record["adaptive"]
        print(
            f"{tag}: exact {f['exact_accuracy']:.4f}, token {f['accuracy']:.4f} on "
            f"{record['eval_examples']} puzzles; adaptive halting: {a['steps']:.2f} of "
            f"{mcfg.halt_max_steps} ACT steps, exact {a['exact_accuracy']:.4f}; "
            f"{updates} updates in {seconds / 60:.1f} min",
            flush=True,
        )
    write_json(vdir / "result.json", record)
    return record


# --------------------------------------------------------------------------------------------
# Report


def _minutes(s) -> str:
    return "-" if s is None else f"{s / 60:.1f} min"


def _pct(m: dict | None, k: str) -> str:
    return "-" if not m else f"{100 * m[k]:.1f}%"


def ranked(records: list[dict]) -> list[dict]:
    """The records by exact accuracy (fixed halting), then token accuracy; failed ones last."""

    def key(r):
        f = r.get("fixed") or {}
        return (-f.get("exact_accuracy", -1.0), -f.get("accuracy", -1.0))

    return sorted(records, key=key)


def markdown_table(records: list[dict], halt_max_steps: int) -> str:
    """One row per variant, ranked by exact accuracy (then token accuracy)."""
    head = (
        "| variant | arch | parameters | depth / sup. step | steps | wall time | exact acc. "
        "| token acc. | mean ACT steps (adaptive) | exact acc. (adaptive) |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in ranked(records):
        steps = "failed" if r.get("error") else str(r["updates"])
        if r.get("updates") is not None and r["updates"] != r["batches"]:
            steps += f" ({r['batches']} batch(es))"
        ad = r.get("adaptive")
        act = "-" if not ad else f"{ad['steps']:.2f} / {halt_max_steps}"
        lines.append(
            f"| {r['variant']} | {r['arch']} | {r['params']:,} | {r['effective_depth']} | {steps} "
            f"| {_minutes(r.get('train_seconds'))} | {_pct(r.get('fixed'), 'exact_accuracy')} "
            f"| {_pct(r.get('fixed'), 'accuracy')} | {act} | {_pct(ad, 'exact_accuracy')} |"
        )
    return "\n".join(lines)


def bar_chart(records: list[dict], path: Path, title: str) -> None:
    import matplotlib  # lazy: only the chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in records]
    exact = [100 * (r.get("fixed") or {}).get("exact_accuracy", 0.0) for r in records]
    token = [100 * (r.get("fixed") or {}).get("accuracy", 0.0) for r in records]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2))
    w = 0.38
    for off, vals, label in ((-w / 2, exact, "exact accuracy"), (w / 2, token, "token accuracy")):
        bars = ax.bar(x + off, vals, w, label=label)
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=7, padding=1)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _budget_text(args, short: bool = False) -> str:
    if args.budget_s is not None:
        if short:
            return f"{args.budget_s:g} s"
        return (
            f"{args.budget_s:g} s of wall clock (compilation included; lr decay to "
            f"{args.lr_min_ratio:g} x lr fitted to it)"
        )
    if args.budget_minutes is not None:
        return f"{args.budget_minutes:g} min" + ("" if short else " of training steps")
    return f"{args.budget_steps} " + ("updates" if short else "optimizer updates")


def describe(args, meta, meta_test) -> str:
    budget = _budget_text(args)
    h, l = parse_cycles(args.cycles)
    n_eval = min(args.eval_examples or meta_test.num_examples, meta_test.num_examples)
    return (
        f"Data {args.data} ({meta.num_examples} train examples, {n_eval} of "
        f"{meta_test.num_examples} test puzzles scored); budget {budget} per variant; "
        f"hidden {args.hidden}, T,n = {h},{l} (base), batch {args.batch}, "
        f"halt_max_steps {args.halt_max_steps}, lr {args.lr:g}, "
        f"{'EMA' if args.ema else 'no EMA'}, seed {args.seed}."
    )


def short_title(args, meta_test) -> str:
    budget = _budget_text(args, short=True)
    n_eval = min(args.eval_examples or meta_test.num_examples, meta_test.num_examples)
    return (
        f"Sudoku, {n_eval} held-out puzzles: hidden {args.hidden}, T,n {args.cycles}, "
        f"batch {args.batch}, {budget} per variant"
    )


def write_report(records: list[dict], args, meta, meta_test) -> str:
    out = Path(args.out)
    table = markdown_table(records, args.halt_max_steps)
    about = describe(args, meta, meta_test)
    text = (
        "# TRM ablation\n\n"
        f"{about}\n\n"
        "Ranked by exact accuracy, then token accuracy. "
        "Exact and token accuracy: fixed halting (all ACT steps, the reference's metric). "
        "Mean ACT steps and the last column: adaptive halting (first step where the variant's "
        "training halting rule fires: q_halt > 0, or q_halt > q_continue for HRM and the "
        "transformer). "
        "Depth: blocks applied per supervision step. Steps: optimizer updates. Wall time: "
        "trm_jax.train (compilation included, scoring excluded).\n\n"
        f"{table}\n\n![exact and token accuracy](ablation.png)\n"
    )
    write_text(out / "ablation.md", text)
    write_json(out / "ablation.json", {"about": about, "results": records})
    bar_chart(records, out / "ablation.png", short_title(args, meta_test))
    return table


# --------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(
        prog="python scripts/ablate.py",
        description="Train TRM variants on the same Sudoku data and budget; table and chart.",
    )
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    p.add_argument("--out", default="runs/ablation", help="results and work dirs")
    p.add_argument("--data", default="data/sudoku-cpu", help="dataset (built when missing)")
    g = p.add_argument_group("dataset build (when --data does not exist)")
    g.add_argument("--num-train", type=int, default=1000)
    g.add_argument("--num-test", type=int, default=500)
    g.add_argument("--givens", type=int, default=45)
    g.add_argument("--data-seed", type=int, default=0)
    g.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    b = p.add_mutually_exclusive_group()
    b.add_argument("--budget-steps", type=int, default=300, help="optimizer updates per variant")
    b.add_argument("--budget-minutes", type=float, default=None, help="training minutes each")
    b.add_argument(
        "--budget-s", type=float, default=None, help="wall-clock seconds each, lr decay fitted"
    )
    s = p.add_argument_group("model and training (common to all variants)")
    s.add_argument("--hidden", type=int, default=64)
    s.add_argument("--heads", type=int, default=0, help="attention heads (0: max(2, hidden // 64))")
    s.add_argument("--cycles", default="3,6", help="T,n of the base TRM (H_cycles,L_cycles)")
    s.add_argument("--batch", type=int, default=32, help="global training batch")
    s.add_argument("--halt-max-steps", type=int, default=16, help="N_sup")
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="default: 10%% of the batches (--budget-s: 30)",
    )
    s.add_argument(
        "--lr-min-ratio",
        type=float,
        default=0.1,
        help="--budget-s / --budget-minutes: the decay's end, x lr",
    )
    s.add_argument("--ema", action=argparse.BooleanOptionalAction, default=False)
    s.add_argument("--dtype", choices=("bfloat16", "float32"), default=None)
    s.add_argument("--remat", choices=("none", "block", "full"), default=None, help="model.remat")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint-every", type=int, default=0, help="steps (0: only at the end)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--eval-examples", type=int, default=200, help="test puzzles scored (0: all)")
    e.add_argument("--eval-batch", type=int, default=0, help="0: min(256, examples)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
    p.add_argument("--estimate", action="store_true", help="time a few steps, project the run")
    p.add_argument("--quiet", action="store_true", help="no training progress lines")
    return p


def check_args(args) -> None:
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise AblationError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(VARIANTS)}."
        )
    args.variants = list(dict.fromkeys(names))
    parse_cycles(args.cycles)
    for flag in ("hidden", "batch", "halt_max_steps"):
        if getattr(args, flag) < 1:
            raise AblationError(f"--{flag.replace('_', '-')} must be >= 1.")
    if args.budget_minutes is not None and args.budget_minutes <= 0:
        raise AblationError("--budget-minutes must be > 0.")
    if args.budget_minutes is None and args.budget_steps < 1:
        raise AblationError("--budget-steps must be >= 1.")
    if args.budget_s is not None and args.budget_s <= 0:
        raise AblationError("--budget-s must be > 0.")
    if not 0 <= args.lr_min_ratio <= 1:
        raise AblationError("--lr-min-ratio must be in [0, 1].")
    for flag in ("eval_examples", "eval_batch", "heads", "checkpoint_every"):
        if getattr(args, flag) < 0:
            raise AblationError(f"--{flag.replace('_', '-')} must be >= 0.")


def print_plan(entries: list[dict], args) -> None:
    updates = budget_updates(args)
    print(
        f"{'variant':<15} {'arch':<12} {'parameters':>12} {'depth':>5}  "
        f"{'T,n':>5} {'layers':>6}  budget"
    )
    for e in entries:
        c, m = e["config"], e["model"]
        layers = f"{m.L_layers}+{m.H_layers}" if m.arch == "hrm" else str(m.num_layers_total)
        if updates is None:
            budget = _budget_text(args, short=True)
        else:
            n, per = batches_for_steps(c, updates), updates_per_batch(c)
            budget = f"{n} steps" if per == 1 else f"{n} batch(es) x <= {per} updates"
        extra = []
        if m.arch != "transformer" and not m.mlp_t:
            extra.append(f"attention {m.num_heads} heads")
        elif m.arch == "transformer":
            extra.append(f"{m.num_heads} heads")
        if c.train.deep_supervision != "carry":
            extra.append(c.train.deep_supervision)
        print(
            f"{e['variant']:<15} {m.arch:<12} {e['params']:>12,} {e['depth']:>5}  "
            f"{m.H_cycles:>2},{m.L_cycles:<2} {layers:>6}  {budget}"
            + (f" ({', '.join(extra)})" if extra else "")
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        have_data = Path(args.data).is_dir()
        if args.dry_run and not args.estimate:
            meta = load_meta(args) if have_data else None
            print_plan(plan(args, meta), args)
            if not have_data:
                print(f"({args.data} does not exist; it would be built first.)")
            return 0
        ensure_data(args)
        meta, meta_test = load_meta(args), load_meta(args, "test")
        entries = plan(args, meta)
        print_plan(entries, args)
        if args.estimate:
            return estimate(entries, args, meta, meta_test)
        records = []
        for i, entry in enumerate(entries, 1):
            records.append(run_variant(entry, args, meta, meta_test, i, len(entries)))
        table = write_report(records, args, meta, meta_test)
    except (
        AblationError,
        config_lib.ConfigError,
        CheckpointError,
        DatasetError,
        shd.MeshError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(table)
    print(f"\nTable: {Path(args.out) / 'ablation.md'}; chart: {Path(args.out) / 'ablation.png'}")
    return 0


def estimate(entries: list[dict], args, meta, meta_test) -> int:
    """Time each variant briefly and project the wall time of the whole run."""
    n_eval = args.eval_examples or meta_test.num_examples
    bs = eval_batch_size(args, meta_test)
    total = 0.0
    print(
        f"\nTiming {TIMED_STEPS} training steps and one evaluation batch of {args.batch} per "
        f"variant ({n_eval} examples scored in batches of {bs}):",
        flush=True,
    )
    for e in entries:
        c = e["config"].copy_and_resolve_references()
        if args.budget_minutes is not None or args.budget_s is not None:
            timing = time_variant(finalize(c, 1000, meta, args), meta, args.batch)
            seconds = args.budget_s if args.budget_s is not None else args.budget_minutes * 60
            batches = max(1, int(seconds / timing["step"]))
        else:
            batches = batches_for_steps(c, args.budget_steps)
            timing = time_variant(finalize(c, batches, meta, args), meta, args.batch)
        secs = projected_seconds(timing, batches, c, n_eval, bs)
        total += secs
        print(
            f"  {e['variant']:<15} compile {timing['compile']:5.1f} s, {timing['step']:6.3f} s/step"
            f" (CPU {timing['step_cpu']:.3f} s) x {batches}, eval "
            f"{1000 * timing['eval_example']:.0f} ms/example (CPU "
            f"{1000 * timing['eval_example_cpu']:.0f} ms, compile {timing['eval_compile']:.1f} s):"
            f" about {secs / 60:.1f} min",
            flush=True,
        )
    print(f"Projected wall time of the whole run: about {total / 60:.0f} min.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
