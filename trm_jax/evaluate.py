"""python -m trm_jax.evaluate --workdir DIR [--step N] [--halting fixed|adaptive|both] ...

Scores a trained checkpoint on a dataset split the way the reference's evaluation does (reference
§5.4): every example of the split, a fresh ACT carry per batch, ``halt_max_steps`` supervision
steps, the metrics of the last step (``--halting fixed``) summed and divided by the number of
examples. ``--halting adaptive`` instead takes each example's outputs at the first step whose
q_halt > 0, and ``--halting both`` reports the two side by side (accuracy against mean steps).
The headline is exact accuracy (Sudoku, maze); for ARC datasets it is ``ARC/pass@2`` from the
reference's voting (§6, :class:`trm_jax.arc_scoring.ArcVoter`): crop at EOS, undo each
augmentation, vote across the augmented copies by count (ties by mean sigmoid(q_halt)), pass@K for
K in 1, 2, 5, 10, 100, 1000 and a Kaggle ``submission.json``. ``--ensemble N1,N2,...`` pools the
ARC votes of several checkpoint steps; votes are never pooled otherwise (unlike the reference).

The EMA weights are used when the run trained with ``train.ema`` (``--ema/--no-ema`` overrides).
Results are printed as a table and written to ``DIR/eval/step_<N>/<split>_<halting>/``
(``metrics.json``, and ``submission.json`` for ARC, ``predictions.npz`` with ``--save-preds``);
orbax owns the checkpoint directories, so nothing is written inside them.

Test-time compute (``--steps N --samples K --sigma S --select last|q_halt|vote|first_halt
--verify --seed``, :mod:`trm_jax.test_time`): any non-default setting scores the split through
:func:`trm_jax.batching.score_split` (K trajectories per puzzle, continuous batching with
``first_halt``; ARC: every trajectory votes next to the augmentations) into
``DIR/eval/step_<N>/<split>_<settings>/``, with ``exact_accuracy_verify`` in its own column (never
the headline) and puzzles/s and net applications per puzzle next to the accuracy. The defaults
keep the reference path above.

Bad input (missing or foreign checkpoint, a dataset that does not fit the model) stops with one
sentence and exit status 2. The command line is :mod:`trm_jax.evaluate_cli`; this module is the
evaluation (:func:`score`, :func:`evaluate_split`) and its output format.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from trm_jax import batching
from trm_jax import sharding as shd
from trm_jax.arc_scoring import ArcVoter
from trm_jax.data import dataset as ds
from trm_jax.data import pipeline
from trm_jax.progress import Progress
from trm_jax.test_time import (
    InferenceSettings,
)

PASS_KS = (1, 2, 5, 10, 100, 1000)
METRIC_ORDER = (
    "exact_accuracy",
    "accuracy",
    "q_halt_accuracy",
    "steps",
    "lm_loss",
    "q_halt_loss",
)

# Next to the accuracy: the verified accuracy (own column, never the headline) and the cost.
COST_COLUMNS = ("exact_accuracy_verify", "puzzles_per_second", "net_applications_per_puzzle")


class EvalError(ValueError):
    """Evaluation settings that cannot work (one sentence)."""


@dataclasses.dataclass
class SplitResult:
    """One pass of one checkpoint over a split with one halting rule."""

    step: int
    halting: str
    metrics: dict  # reference metrics, each divided by count; "steps" = mean steps used
    examples: int
    seconds: float
    voter: object | None = None  # ArcVoter for ARC test splits
    predictions: dict | None = None  # example_index, preds, q_halt_logits, steps (numpy)


# --------------------------------------------------------------------------------------------
# Evaluation


def check_dataset(info, data_dir: str, split: str, table_rows: int | None):
    """The split's metadata, after checking that it fits the checkpoint ``info``'s model."""
    meta = pipeline.load_metadata(data_dir, split)
    c = info.model_config
    if (meta.vocab_size, meta.seq_len) != (c.vocab_size, c.seq_len):
        raise EvalError(
            f"{data_dir}/{split} has vocabulary {meta.vocab_size} and sequence length "
            f"{meta.seq_len}, but the checkpoint {info.path} was trained with "
            f"{c.vocab_size} and {c.seq_len}."
        )
    rows = table_rows
    if c.puzzle_len and rows is not None and meta.num_puzzle_identifiers > rows:
        raise EvalError(
            f"{data_dir}/{split} has {meta.num_puzzle_identifiers} puzzle identifiers, more than "
            f"the {rows} rows of the checkpoint's puzzle table (another dataset?)."
        )
    return meta


def _to_host(tree):
    """Global arrays (or this process's numpy rows) -> numpy arrays of every row, on every host."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def score(
    evaluate_fn,
    data_dir: str,
    split: str,
    *,
    batch_size: int,
    mesh,
    step: int = 0,
    halting: str = "fixed",
    max_examples: int = 0,
    voter=None,
    keep_predictions: bool = False,
    progress_label: str | None = None,
) -> SplitResult:
    """The evaluation loop: one pass over ``split`` through ``evaluate_fn(batch) -> (outputs,
    sums)`` (:func:`trm_jax.steps.evaluate_batch` on some weights, batch of global arrays).

    Each process reads its rows of every global batch of ``batch_size``. The first
    ``max_examples`` examples are scored (0: all); rows past them are dropped from every sum.
    ``voter`` (an ArcVoter) receives every scored row's prediction; ``keep_predictions`` keeps
    per-example outputs (for ``--save-preds``). Used by ``python -m trm_jax.evaluate`` and by the
    evaluations during training.
    """
    meta = pipeline.load_metadata(data_dir, split)
    total = meta.num_examples if not max_examples else min(meta.num_examples, max_examples)
    progress = Progress(
        progress_label or halting,
        total,
        unit="examples",
        enabled=progress_label is not None and jax.process_index() == 0,
    )
    t0 = time.time()
    totals: dict = {}
    kept: dict = {"example_index": [], "preds": [], "q_halt_logits": [], "steps": []}
    done = 0
    batches = pipeline.eval_batches(
        data_dir,
        global_batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        split=split,
    )
    for i, local in enumerate(batches):
        if max_examples and i * batch_size >= max_examples:
            break  # the same batch on every process: no need to ask the others
        index = local["example_index"]
        batch = {k: local[k] for k in ("inputs", "labels", "puzzle_identifiers")}
        if max_examples:
            batch["scored"] = index < max_examples
        outputs, sums = evaluate_fn(shd.global_batch(batch, mesh))
        for k, v in jax.device_get(sums).items():
            totals[k] = totals.get(k, 0.0) + float(v)
        if voter is not None or keep_predictions:
            rows = _to_host(
                {
                    "index": np.asarray(index),
                    "keep": np.asarray(local["valid"] & (index < total)),
                    "inputs": np.asarray(local["inputs"]),
                    "puzzle_identifiers": np.asarray(local["puzzle_identifiers"]),
                }
            )
            host = _to_host({k: outputs[k] for k in ("preds", "q_halt_logits", "steps")})
            keep = np.flatnonzero(rows["keep"])
            if voter is not None:
                voter.add_batch(
                    rows["inputs"][keep],
                    rows["puzzle_identifiers"][keep],
                    np.asarray(host["q_halt_logits"])[keep],
                    np.asarray(host["preds"])[keep],
                )
            if keep_predictions:
                kept["example_index"].append(rows["index"][keep])
                kept["preds"].append(np.asarray(host["preds"])[keep].astype(np.int16))
                kept["q_halt_logits"].append(np.asarray(host["q_halt_logits"], np.float32)[keep])
                kept["steps"].append(np.asarray(host["steps"], np.int32)[keep])
        done = min(total, (i + 1) * batch_size)  # examples scored so far, over all processes
        progress.update(done)
    progress.update(done, force=True)
    count = max(totals.get("count", 0.0), 1.0)
    metrics = {k: v / count for k, v in totals.items() if k != "count"}
    metrics["count"] = totals.get("count", 0.0)
    predictions = None
    if keep_predictions:
        predictions = {
            k: (np.concatenate(v) if v else np.zeros((0,), np.int32)) for k, v in kept.items()
        }
    return SplitResult(step, halting, metrics, done, time.time() - t0, voter, predictions)


def evaluate_split(
    trm,
    data_dir: str,
    split: str = "test",
    *,
    adaptive: bool = False,
    batch_size: int,
    max_examples: int = 0,
    voter=None,
    keep_predictions: bool = False,
    progress_label: str | None = None,
) -> SplitResult:
    """:func:`score` with a loaded checkpoint ``trm`` (``trm_jax.load``) on all devices, after
    checking that the split fits its model."""
    check_dataset(trm.info, data_dir, split, int(trm.puzzle_table.shape[0]))
    mesh = shd.make_mesh(-1)
    shd.check_batch(batch_size, mesh)
    trm.to(shd.replicated(mesh))
    return score(
        lambda batch: trm.evaluate(batch, adaptive=adaptive),
        data_dir,
        split,
        batch_size=batch_size,
        mesh=mesh,
        step=trm.step,
        halting="adaptive" if adaptive else "fixed",
        max_examples=max_examples,
        voter=voter,
        keep_predictions=keep_predictions,
        progress_label=progress_label,
    )


def evaluate_settings(
    trm,
    data_dir: str,
    split: str,
    settings: InferenceSettings,
    *,
    batch_size: int,
    max_examples: int = 0,
    voter=None,
    keep_predictions: bool = False,
    progress_label: str | None = None,
) -> SplitResult:
    """A split under test-time ``settings`` (:func:`trm_jax.batching.score_split`: K
    trajectories, noise, selection, ``verify`` in its own metric; continuous batching with
    ``first_halt``), with the metrics of :func:`evaluate_split` and what they cost
    (``puzzles_per_second``, ``net_applications_per_puzzle``)."""
    meta = check_dataset(trm.info, data_dir, split, int(trm.puzzle_table.shape[0]))
    total = meta.num_examples if not max_examples else min(meta.num_examples, max_examples)
    progress = Progress(
        progress_label or "settings", total, unit="puzzles", enabled=progress_label is not None
    )
    t0 = time.time()
    metrics, predictions, sol = batching.score_split(
        trm,
        data_dir,
        split,
        settings,
        batch_size=batch_size,
        max_examples=max_examples,
        voter=voter,
        progress=progress,
    )
    label = settings.label(trm.model_config)
    kept = predictions if keep_predictions else None
    return SplitResult(trm.step, label, metrics, sol.num_puzzles, time.time() - t0, voter, kept)


def arc_references(data_dir: str, split: str):
    """``(identifiers, test_puzzles)`` for scoring an ARC test split with the voting of §6, or
    None when ``split`` of ``data_dir`` is not one."""
    meta = pipeline.load_metadata(data_dir, split)
    if meta.task != "arc" or split != "test":
        return None
    identifiers = ds.load_identifiers(data_dir)
    return identifiers, _read_json(Path(data_dir) / "test_puzzles.json", "test_puzzles.json")


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise EvalError(f"{path} does not exist; ARC scoring needs the dataset's {what}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EvalError(f"{path} is not valid JSON ({e}).") from None


def arc_score(voters: list, test_puzzles: dict) -> tuple[dict, dict]:
    """Pool ``voters`` (copies are merged, the originals untouched) and score them."""
    pooled = ArcVoter(voters[0].identifiers)
    for v in voters:
        pooled.merge(v)
    return pooled.result(test_puzzles, pass_ks=PASS_KS, submission_k=2)


# --------------------------------------------------------------------------------------------
# Output


def headline_name(is_arc: bool) -> str:
    return "ARC/pass@2" if is_arc else "exact_accuracy"


def format_table(rows: list[dict], is_arc: bool, halt_max_steps: int) -> str:
    """Rows of {"label", metrics...} -> an aligned text table, the headline column first."""
    cols = [headline_name(is_arc)] if is_arc else []
    cols += list(METRIC_ORDER)
    if is_arc:
        cols += [f"ARC/pass@{k}" for k in PASS_KS if k != 2]
    cols += [c for c in COST_COLUMNS if any(c in r for r in rows)]
    head = ["halting"] + [("mean steps" if c == "steps" else c) for c in cols]
    lines = [head]
    for r in rows:
        cells = [r["label"]]
        for c in cols:
            v = r.get(c)
            if v is None:
                cells.append("-")
            elif c == "steps":
                cells.append(f"{v:.2f}/{halt_max_steps}")
            elif c in COST_COLUMNS[1:]:
                cells.append(f"{v:.1f}")
            else:
                cells.append(f"{v:.4f}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines)


# --------------------------------------------------------------------------------------------
# Command line (trm_jax.evaluate_cli)


def main(argv: list[str] | None = None) -> int:
    """``python -m trm_jax.evaluate``: see :mod:`trm_jax.evaluate_cli`."""
    from trm_jax import evaluate_cli  # imported here: the command line builds on this module

    return evaluate_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
