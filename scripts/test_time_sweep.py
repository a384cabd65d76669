"""Accuracy against test-time compute: a grid of inference settings on one checkpoint and split.

    python scripts/test_time_sweep.py --workdir runs/sudoku-cpu --max-examples 500 \\
        --steps 1,2,4,8,16,32,64 --samples 1,4,8 --sigmas 0,0.1,0.3 --name main-45

For every (samples K, noise sigma, steps N) of the grid, one plain rollout over the puzzles
answers under the selection rules last, q_halt and vote at once (they share its wall time and
compute). ``first_halt`` is run on its own, in batches of ``--stream-rows`` rows, twice: a plain
loop whose batch stops when all its puzzles have halted, and continuous batching, which refills a
puzzle's slot as soon as it halts; both rows show what that rule really costs.
``verify`` (Sudoku, maze) is its own column, never mixed into the model-only accuracy. K > 1
runs only with sigma > 0 (without noise the K trajectories are identical). Each (K, sigma, mode)
is compiled once on the first batch before timing (the steps N are a traced argument).

Writes, for the section ``--name``: a markdown table into ``OUT.md`` (the section between
``<!-- sweep:NAME -->`` markers is replaced, other sections are kept), the rows into ``OUT.json``
(by section) and a plot ``OUT-NAME.png`` (exact accuracy against net applications per puzzle,
one curve per selection rule and (K, sigma)). Net applications per puzzle count every row of every
batch computed (padding and finished rows included): steps x K x H_cycles x (L_cycles + 1) for TRM.

Bad arguments stop with one sentence and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trm_jax import fileio  # noqa: E402
from trm_jax.guards import CliParser  # noqa: E402
from trm_jax.progress import Progress  # noqa: E402

RULES = ("last", "q_halt", "vote", "first_halt")


class SweepError(ValueError):
    """Sweep arguments that cannot work (one sentence)."""


def _numbers(text: str, what: str, cast, noun: str, lo: int) -> list:
    try:
        v = [cast(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SweepError(
            f"--{what} must be a comma-separated list of {noun}, got {text!r}."
        ) from None
    if not v or min(v) < lo:
        raise SweepError(f"--{what} needs {noun} >= {lo}, got {text!r}.")
    return v


def _ints(text: str, what: str) -> list[int]:
    return _numbers(text, what, int, "integers", 1)


def _floats(text: str, what: str) -> list[float]:
    return _numbers(text, what, float, "numbers", 0)


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="scripts/test_time_sweep.py", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="training work dir or .../checkpoints/<N>")
    p.add_argument("--step", type=int, default=None)
    p.add_argument("--dataset", default=None, help="dataset directory (default: the run's)")
    p.add_argument("--split", default="test")
    p.add_argument("--max-examples", type=int, default=200)
    p.add_argument("--steps", default="1,2,4,8,16,32,64")
    p.add_argument("--samples", default="1,4,8")
    p.add_argument("--sigmas", default="0,0.1,0.3")
    p.add_argument("--select", default=",".join(RULES))
    p.add_argument("--seeds", default="0", help="noise seeds (rows with sigma > 0 per seed)")
    p.add_argument("--rows", type=int, default=512, help="rows per batch: K x puzzles <= rows")
    p.add_argument(
        "--stream-rows",
        type=int,
        default=64,
        help="rows per batch of the first_halt re-runs (early stop, continuous batching)",
    )
    p.add_argument("--no-continuous", action="store_true", help="skip the first_halt re-runs")
    p.add_argument("--name", default=None, help="section name (default: the run's directory)")
    p.add_argument("--note", default="", help="text above the table (machine, context)")
    p.add_argument("--out", default=str(REPO / "docs" / "test-time-compute"))
    p.add_argument("--quiet", action="store_true")
    return p


def load_puzzles(data_dir: str, split: str, max_examples: int):
    """(inputs [P, L], labels [P, L], puzzle ids [P]) of the first ``max_examples`` examples."""
    from trm_jax.data import pipeline

    xs, ys, ids = [], [], []
    n = 0
    for b in pipeline.eval_batches(data_dir, global_batch_size=256, split=split):
        keep = np.flatnonzero(b["valid"])
        xs.append(b["inputs"][keep])
        ys.append(b["labels"][keep])
        ids.append(b["puzzle_identifiers"][keep])
        n += keep.size
        if max_examples and n >= max_examples:
            break
    x, y, i = (np.concatenate(a) for a in (xs, ys, ids))
    m = max_examples or x.shape[0]
    return x[:m].astype(np.int32), y[:m].astype(np.int32), i[:m].astype(np.int32)


def exact(answers_PxL: np.ndarray, labels_PxL: np.ndarray) -> tuple[float, float]:
    """(exact accuracy, token accuracy) over the labelled cells (label != -100)."""
    mask = labels_PxL != -100
    ok = (answers_PxL == labels_PxL) | ~mask
    return float(ok.all(axis=1).mean()), float((ok & mask).sum() / max(mask.sum(), 1))


def run(args: argparse.Namespace) -> dict:
    from trm_jax import batching, inference
    from trm_jax import test_time as tt
    from trm_jax.evaluate import check_dataset

    steps_grid = _ints(args.steps, "steps")
    samples_grid = _ints(args.samples, "samples")
    sigmas = _floats(args.sigmas, "sigmas")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [0]
    rules = [r for r in args.select.split(",") if r.strip()]
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise SweepError(f"--select takes rules from {RULES}, got {args.select!r}.")
    if min(args.rows, args.stream_rows) < max(samples_grid):
        raise SweepError("--rows and --stream-rows must be at least the largest --samples.")
    if args.max_examples < 0:
        raise SweepError(f"--max-examples must be >= 0, got {args.max_examples}.")

    trm = inference.load(args.workdir, args.step)
    data_dir = args.dataset or trm.info.dataset
    check_dataset(trm.info, data_dir, args.split, int(trm.puzzle_table.shape[0]))
    x, y, ids = load_puzzles(data_dir, args.split, args.max_examples)
    P = x.shape[0]
    check = tt.answer_check(trm.task) if trm.task in tt.ANSWER_CHECK_TASKS else None
    cfg = trm.model_config
    name = args.name or trm.info.workdir.name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SweepError(f"--name may hold only letters, digits, '.', '_' and '-', got {name!r}.")

    configs = []
    for K in samples_grid:
        for sigma in sigmas:
            if K > 1 and sigma == 0:
                continue
            for seed in seeds if sigma > 0 else [0]:
                configs.append((K, sigma, seed))
    runs = [(c, n) for c in configs for n in steps_grid]
    # Progress counts supervision steps x samples (what the runs cost), not runs.
    work = [K * n for (K, _, _), n in runs]
    progress = Progress("sweep", sum(work), unit="row-steps", enabled=not args.quiet, every=0.0)
    warmed: set = set()
    rows = []
    t_start = time.perf_counter()

    def solve(settings, continuous, rows=args.rows):
        most = max(1, min(P, rows // settings.samples))
        B = -(-P // -(-P // most))  # as many batches as needed, as evenly filled as possible
        key = (settings.samples, settings.sigma > 0, settings.stops_early, continuous, B)
        if key not in warmed:  # compile outside the timed run (N is traced: once per key)
            batching.solve_many(
                trm.model,
                trm.variables,
                trm.puzzle_table,
                x[:B],
                ids[:B],
                settings,
                batch_size=B,
                continuous=continuous,
            )
            warmed.add(key)
        return batching.solve_many(
            trm.model,
            trm.variables,
            trm.puzzle_table,
            x,
            ids,
            settings,
            batch_size=B,
            continuous=continuous,
            check=check,
        )

    def row(rule, sol, mode):
        acc, tok = exact(sol.choices[rule].answer, y)
        ver = exact(sol.verified[rule][0], y)[0] if sol.verified is not None else None
        s = sol.settings
        return {
            "select": rule,
            "steps": s.num_steps(cfg),
            "samples": s.samples,
            "sigma": s.sigma,
            "seed": s.seed,
            "exact_accuracy": acc,
            "exact_accuracy_verify": ver,
            "token_accuracy": tok,
            "mean_steps": float(sol.steps.mean()),
            "net_applications_per_puzzle": sol.net_applications_per_puzzle,
            "puzzles_per_second": sol.puzzles_per_second,
            "wall_s": sol.seconds,
            "mode": mode,
            "puzzles": P,
        }

    for i, ((K, sigma, seed), n) in enumerate(runs):
        s = tt.InferenceSettings(steps=n, samples=K, sigma=sigma, seed=seed)
        sol = solve(s, False)
        rerun = "first_halt" in rules and not args.no_continuous
        for rule in rules:
            if not (rule == "first_halt" and rerun):
                rows.append(row(rule, sol, "plain, shared rollout"))
        info = f"K={K} sigma={sigma:g} N={n}: last {exact(sol.answer, y)[0]:.3f}"
        if rerun:  # first_halt at its real cost: smaller batches that stop when decided
            s_fh = dataclasses.replace(s, select="first_halt")
            early = solve(s_fh, False, args.stream_rows)
            stream = solve(s_fh, True, args.stream_rows)
            rows.append(row("first_halt", early, "plain, early stop"))
            rows.append(row("first_halt", stream, "continuous"))
        progress.update(sum(work[: i + 1]), f"run {i + 1}/{len(runs)} {info}", force=True)
    return {
        "name": name,
        "checkpoint": str(trm.info.path),
        "step": trm.step,
        "dataset": str(data_dir),
        "split": args.split,
        "puzzles": P,
        "task": trm.task,
        "halt_max_steps": cfg.halt_max_steps,
        "net_applications_per_step": cfg.net_applications,
        "weights": "ema" if trm.use_ema else "raw",
        "note": args.note,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "command": shlex.join(["python", "scripts/test_time_sweep.py", *args.argv]),
        "total_wall_s": time.perf_counter() - t_start,
        "rows": rows,
    }


def _fmt(v, pct=True):
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:g}"


def markdown(res: dict, png_name: str) -> str:
    rows = res["rows"]
    base = [
        r
        for r in rows
        if r["select"] == "last"
        and r["samples"] == 1
        and r["sigma"] == 0
        and r["steps"] == res["halt_max_steps"]
    ]
    model_only = max(rows, key=lambda r: (r["exact_accuracy"], -r["net_applications_per_puzzle"]))
    lines = [
        f"### {res['name']}: {res['split']} split, {res['puzzles']} puzzles",
        "",
        f"Checkpoint `{res['checkpoint']}` (step {res['step']}, {res['weights']} weights), "
        f"dataset `{res['dataset']}`; {res['net_applications_per_step']} net applications per "
        f"supervision step and trajectory; total wall time {res['total_wall_s']:.0f} s.",
        "",
    ]
    if res["note"]:
        lines += [res["note"], ""]
    if base:
        b = base[0]
        lines.append(
            f"Reference `last@{res['halt_max_steps']}`: exact {_fmt(b['exact_accuracy'])}%. "
            "Best model-only row (ties: least compute): "
            f"`{model_only['select']}@{model_only['steps']}` K="
            f"{model_only['samples']} sigma={model_only['sigma']:g} ({model_only['mode']}): "
            f"exact {_fmt(model_only['exact_accuracy'])}% at "
            f"{model_only['net_applications_per_puzzle']:.0f} net applications per puzzle."
        )
        lines.append("")
    lines += [
        "| select | N | K | sigma | seed | exact % | exact % +verify | token % | steps/puzzle "
        "| net apps/puzzle | puzzles/s | wall s | run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['select']} | {r['steps']} | {r['samples']} | {r['sigma']:g} | {r['seed']} "
            f"| {_fmt(r['exact_accuracy'])} | {_fmt(r['exact_accuracy_verify'])} "
            f"| {_fmt(r['token_accuracy'])} | {r['mean_steps']:.2f} "
            f"| {r['net_applications_per_puzzle']:.0f} | {r['puzzles_per_second']:.1f} "
            f"| {r['wall_s']:.1f} | {r['mode']} |"
        )
    lines += ["", f"![exact accuracy against compute]({png_name})", ""]
    lines.append(f"Command: `{res['command']}`")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = dict(zip(RULES, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    groups: dict = {}
    for r in res["rows"]:
        if r["mode"] == "plain, early stop":
            continue
        if (
            r["select"] == "first_halt"
            and r["mode"] != "continuous"
            and any(q["mode"] == "continuous" for q in res["rows"])
        ):
            continue  # first_halt is drawn at its real (early-stopping) cost
        key = (r["select"], r["samples"], r["sigma"], r["seed"])
        groups.setdefault(key, []).append(r)
    styles = ["-", "--", ":", "-."]
    configs = sorted({k[1:] for k in groups})
    for (rule, K, sigma, seed), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["net_applications_per_puzzle"])
        ls = styles[configs.index((K, sigma, seed)) % len(styles)]
        ax.plot(
            [r["net_applications_per_puzzle"] for r in rs],
            [100 * r["exact_accuracy"] for r in rs],
            ls,
            marker="o",
            ms=3,
            color=colours[rule],
            label=f"{rule} K={K} sigma={sigma:g}" + (f" seed {seed}" if sigma > 0 else ""),
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("net applications per puzzle")
    ax.set_ylabel("exact accuracy (%)")
    ax.set_title(f"{res['name']}: {res['split']}, {res['puzzles']} puzzles (model-only)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    fileio.write_bytes(path, buf.getvalue())


def write_results(res: dict, out: str) -> tuple[Path, Path, Path]:
    prefix = Path(out)
    md, js, png = (
        prefix.with_name(prefix.name + ".md"),
        prefix.with_name(prefix.name + ".json"),
        prefix.with_name(f"{prefix.name}-{res['name']}.png"),
    )
    plot(res, png)
    section = (
        f"<!-- sweep:{res['name']} -->\n{markdown(res, png.name)}\n<!-- /sweep:{res['name']} -->"
    )
    text = (
        md.read_text()
        if md.is_file()
        else (
            "# Test-time compute: accuracy against compute\n\n"
            "Written by `scripts/test_time_sweep.py` (one section per sweep).\n"
        )
    )
    pattern = re.compile(
        rf"<!-- sweep:{re.escape(res['name'])} -->.*?<!-- /sweep:{re.escape(res['name'])} -->",
        re.S,
    )
    text = (
        pattern.sub(lambda _: section, text)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + section + "\n")
    )
    fileio.write_text(md, text)
    all_results = json.loads(js.read_text()) if js.is_file() else {}
    all_results[res["name"]] = res
    fileio.write_json(js, all_results)
    return md, js, png


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from trm_jax.checkpoint import CheckpointError
    from trm_jax.data.dataset import DatasetError
    from trm_jax.evaluate import EvalError
    from trm_jax.test_time import SettingsError

    try:
        res = run(args)
        paths = write_results(res, args.out)
    except (SweepError, CheckpointError, DatasetError, EvalError, SettingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
