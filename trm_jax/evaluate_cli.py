"""The command line of ``python -m trm_jax.evaluate``: flags, checks, the results on disk.

See :mod:`trm_jax.evaluate` for what is scored and how. Everything the command line names is
checked before any weights are loaded: ``--out`` must be a directory it can write (not a file),
``--split`` a plain name (no ``/`` or ``..``: results stay inside ``--out`` and the split inside
the dataset), ``--batch-size`` must fit in memory, and the run's recorded dataset must exist (it
is named when it does not). Bad input stops with one sentence and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from trm_jax import checkpoint as ckpt
from trm_jax import guards, inference
from trm_jax import sharding as shd
from trm_jax.arc_scoring import ArcVoter
from trm_jax.checkpoint import CheckpointError
from trm_jax.data.dataset import DatasetError
from trm_jax.evaluate import (
    EvalError,
    SplitResult,
    arc_references,
    arc_score,
    check_dataset,
    evaluate_settings,
    evaluate_split,
    format_table,
    headline_name,
)
from trm_jax.fileio import write_json, write_npz
from trm_jax.tasks import sudoku
from trm_jax.test_time import SettingsError, add_settings_arguments, settings_from_args


def build_parser() -> argparse.ArgumentParser:
    p = guards.CliParser(
        prog="python -m trm_jax.evaluate",
        description="Score a checkpoint on a dataset split (reference metrics, ARC pass@K).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", help="training work dir (latest checkpoint unless --step)")
    where.add_argument("--checkpoint", help="a checkpoint directory .../checkpoints/<N>")
    p.add_argument("--step", type=int, default=None, help="checkpoint step in --workdir")
    p.add_argument("--dataset", default=None, help="dataset directory (default: the run's)")
    p.add_argument("--split", default=None, help="split to score (default: the run's eval split)")
    p.add_argument("--halting", choices=("fixed", "adaptive", "both"), default="fixed")
    p.add_argument("--batch-size", type=int, default=None, help="global evaluation batch")
    p.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use the EMA weights (default: when the run trained with train.ema)",
    )
    p.add_argument(
        "--ensemble", default=None, help="ARC: pool the votes of these checkpoint steps (N1,N2,...)"
    )
    p.add_argument("--max-examples", type=int, default=0, help="score only the first M examples")
    p.add_argument("--save-preds", action="store_true", help="also write predictions.npz")
    p.add_argument("--out", default=None, help="results directory (default: DIR/eval)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_settings_arguments(p)  # test-time compute; non-default settings score via batching
    return p


def _parse_steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise EvalError(f"--ensemble takes comma-separated steps like 3,6, got {text!r}.") from None
    if len(steps) < 1 or len(set(steps)) != len(steps):
        raise EvalError(f"--ensemble needs distinct checkpoint steps, got {text!r}.")
    return steps


def _dataset_dir(args, first) -> str:
    """--dataset, else the run's recorded dataset (named in the error when it is not here)."""
    if args.dataset:
        if not os.path.isdir(args.dataset):
            raise EvalError(f"--dataset {args.dataset} is not a directory.")
        return args.dataset
    recorded = ckpt.recorded_datasets(first.config, first.meta)
    found = first.dataset
    if found and os.path.isdir(found):
        return found
    named = " or ".join(recorded) if recorded else "(none recorded)"
    raise EvalError(
        f"the run's dataset {named} (recorded in {first.workdir}) is not here; pass --dataset DIR."
    )


def run(args: argparse.Namespace) -> dict:
    """Evaluate as the command line asks; returns {halting: result dict}."""
    if args.batch_size is not None and args.batch_size < 1:
        raise EvalError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.max_examples < 0:
        raise EvalError(f"--max-examples must be >= 0, got {args.max_examples}.")
    settings = settings_from_args(args)
    if not settings.is_default and args.halting != "fixed":
        raise EvalError(
            "--halting adaptive is the reference's rule; with test-time settings, "
            "use --select first_halt."
        )
    # Outputs and path parts first: a bad --out must not fail after the whole evaluation.
    if args.out:
        guards.check_output_dir(args.out, "--out")
    if args.split is not None:
        guards.check_component(args.split, "--split")
    source = args.workdir or args.checkpoint
    steps = None
    if args.ensemble:
        if args.step is not None or args.checkpoint:
            raise EvalError("--ensemble names its steps itself; drop --step/--checkpoint.")
        steps = _parse_steps(args.ensemble)
    first = ckpt.locate(source, steps[0] if steps else args.step)
    if steps:
        for s in steps[1:]:
            ckpt.locate(source, s)  # fail early on a missing step
    config = first.config
    data_dir = _dataset_dir(args, first)
    split = args.split or str(config.data.get("eval_split", "test") or "test")
    guards.check_component(split, "the eval split")
    meta = check_dataset(first, data_dir, split, first.meta.get("table_rows"))
    is_arc = meta.task == "arc" and split == "test"
    if steps and not is_arc:
        raise EvalError(
            f"--ensemble pools ARC votes, but {data_dir}/{split} is a {meta.task or 'non-ARC'} "
            "split; evaluate each step on its own."
        )
    batch_size = int(
        args.batch_size
        or config.data.get("eval_global_batch_size", 0)
        or config.data.get("global_batch_size", 0)
        or 64
    )
    guards.check_batch_size(first.model_config, batch_size)
    out_root = Path(args.out) if args.out else first.workdir / "eval"
    guards.check_output_dir(out_root, "the results directory")
    identifiers, test_puzzles = arc_references(data_dir, split) if is_arc else (None, None)
    modes = ["fixed", "adaptive"] if args.halting == "both" else [args.halting]
    if not settings.is_default:  # one mode named by its settings
        modes = [settings.for_task(meta.task).slug(first.model_config)]
    name = f"ensemble_{'+'.join(map(str, steps))}" if steps else f"step_{first.step}"
    verbose = not args.quiet

    per_step: dict[int, dict[str, SplitResult]] = {}
    for s in steps or [first.step]:
        trm = inference.load(source, s, ema=args.ema)
        if verbose:
            print(
                f"Evaluating {trm!r} on {data_dir}/{split} ({meta.num_examples} examples, "
                f"batch {batch_size})",
                file=sys.stderr,
                flush=True,
            )
        per_step[s] = {}
        for mode in modes:
            voter = ArcVoter(identifiers) if is_arc else None
            common = dict(
                batch_size=batch_size,
                max_examples=args.max_examples,
                voter=voter,
                keep_predictions=args.save_preds or sudoku.is_sudoku_split(meta),
                progress_label=f"step {s} {mode}" if verbose else None,
            )
            if settings.is_default:  # today's evaluation (the reference)
                split_result = evaluate_split(
                    trm, data_dir, split, adaptive=mode == "adaptive", **common
                )
            else:
                split_result = evaluate_settings(trm, data_dir, split, settings, **common)
            per_step[s][mode] = split_result
        weights = "ema" if trm.use_ema else "raw"
        halt_max_steps = trm.model_config.halt_max_steps

    results = {}
    for mode in modes:
        runs = [per_step[s][mode] for s in per_step]
        # Reference metrics: averaged over checkpoints for an ensemble (each is listed too).
        metrics = {
            k: float(np.mean([r.metrics[k] for r in runs])) for k in runs[0].metrics if k != "count"
        }
        metrics["count"] = runs[0].metrics.get("count", 0.0)
        submission = None
        per_checkpoint = {str(r.step): dict(r.metrics) for r in runs}
        if is_arc:
            for r in runs:
                per_checkpoint[str(r.step)].update(arc_score([r.voter], test_puzzles)[0])
            arc_metrics, submission = arc_score([r.voter for r in runs], test_puzzles)
            metrics.update(arc_metrics)
        head = headline_name(is_arc)
        out_dir = out_root / name / f"{split}_{mode}"
        record = {
            "checkpoint": str(first.path) if not steps else None,
            "workdir": str(first.workdir),
            "steps": list(per_step),
            "dataset": os.path.abspath(data_dir),
            "split": split,
            "halting": mode,
            "weights": weights,
            "batch_size": batch_size,
            "examples": runs[0].examples,
            "halt_max_steps": halt_max_steps,
            "headline": {"metric": head, "value": metrics.get(head)},
            "metrics": metrics,
            "per_checkpoint": per_checkpoint,
            "seconds": sum(r.seconds for r in runs),
        }
        if settings.is_default:  # what the reference's evaluation costs (all N steps, every row)
            padded = -(-record["examples"] // batch_size) * batch_size
            net = halt_max_steps * first.model_config.net_applications
            record["cost"] = {
                "puzzles_per_second": record["examples"] / max(record["seconds"], 1e-9),
                "net_applications_per_puzzle": net * padded / max(record["examples"], 1),
            }
        else:
            record["settings"] = dict(
                dataclasses.asdict(settings), label=settings.label(first.model_config)
            )
        if settings.is_default and runs[0].predictions is not None and sudoku.is_sudoku_split(meta):
            # Sudoku: exact accuracy by givens bucket and by whether the puzzle needs search.
            record["by_difficulty"] = sudoku.split_breakdown(data_dir, split, runs[0].predictions)
        write_json(out_dir / "metrics.json", record)
        if submission is not None:
            write_json(out_dir / "submission.json", submission)
        if args.save_preds:
            for r in runs:
                fname = "predictions.npz" if not steps else f"predictions_step_{r.step}.npz"
                write_npz(out_dir / fname, r.predictions)
        record["out_dir"] = str(out_dir)
        results[mode] = record
    return results


def report(results: dict) -> str:
    first = next(iter(results.values()))
    is_arc = first["headline"]["metric"].startswith("ARC")
    rows = [
        dict(label=r.get("settings", {}).get("label", mode), **r["metrics"], **r.get("cost", {}))
        for mode, r in results.items()
    ]
    where = first["checkpoint"] or f"{first['workdir']} steps {first['steps']} (ARC votes pooled)"
    lines = [
        f"{where} ({first['weights']} weights) on {first['dataset']} split {first['split']}: "
        f"{first['examples']} examples",
        format_table(rows, is_arc, first["halt_max_steps"]),
    ]
    if is_arc and len(first["steps"]) > 1:
        for mode, r in results.items():
            each = ", ".join(
                f"step {s}: {m['ARC/pass@2']:.4f}" for s, m in r["per_checkpoint"].items()
            )
            lines.append(f"{mode}: ARC/pass@2 per checkpoint: {each}")
    for mode, r in results.items():
        if r.get("by_difficulty"):
            lines.append(f"{mode}: " + sudoku.format_breakdown(r["by_difficulty"]))
    for mode, r in results.items():
        h = r["headline"]
        lines.append(f"{mode}: {h['metric']} = {h['value']:.4f}; results in {r['out_dir']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except (
        CheckpointError,
        DatasetError,
        EvalError,
        SettingsError,
        guards.GuardError,
        shd.MeshError,
        FileNotFoundError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(_memory_message(args), file=sys.stderr)
        return 2
    except Exception as e:  # XLA reports an allocation it cannot make as RESOURCE_EXHAUSTED
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        print(_memory_message(args), file=sys.stderr)
        return 2
    print(report(results), flush=True)
    return 0


def _memory_message(args) -> str:
    asked = f"--batch-size {args.batch_size}" if args.batch_size else "the run's evaluation batch"
    return f"error: the evaluation ran out of memory with {asked}; pass a smaller --batch-size."


if __name__ == "__main__":
    sys.exit(main())
