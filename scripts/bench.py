"""Speed, FLOPs, memory and compile cost of the TRM train and eval steps (issue 6).

    .venv/bin/python scripts/bench.py [--quick] [--configs small-att,small-mlp]
        [--dtypes float32,bfloat16] [--reps 10] [--variants] [--out FILE]

For each named config and dtype, in one run: compile time of the train and eval steps; their
median wall time over ``--reps`` calls after one warm-up (``block_until_ready``), and the
process CPU time per call (a steadier figure when other jobs share the cores); examples/s;
FLOPs per step from XLA's cost analysis and from an analytic matmul count; achieved FLOP/s
against this machine's matmul peak measured in the same run (float32, and bfloat16 inputs with
float32 accumulation); the temporary memory of the train step, against the same step with one H
cycle (the warm-up cycles run under ``stop_gradient``, so they should add no activation memory);
and, per config, compile time and HLO size for (H_cycles, L_cycles) = (1, 1) against (3, 6). Each
row is compared with the reference's timings (official PyTorch code on a 2-core Xeon with
AMX-BF16). Measured results: docs/performance.md.

The configs are the paper's files at benchmark sizes: ``small-att`` / ``paper-att`` are
configs/sudoku_att.py and ``small-mlp`` / ``paper-mlp`` configs/sudoku_mlp.py, at hidden 128 (4
heads, batch 64) or their own 512 (8 heads, batch 16), on Sudoku shapes. The train step is the one
``trm_jax.train`` runs: ``trm_jax.steps.build_steps`` on one device (one ACT step in training
mode, exploration 0.1, the backward of loss / B, the puzzle-table sign-SGD, AdamATan2 and the EMA,
state donated). The eval step is one ``act.act_step`` in evaluation mode with the carry donated
(the step ``evaluate_batch`` and the notebook API chain ``halt_max_steps`` times).

``--quick`` (under two minutes): small-mlp at hidden 64 and batch 8, float32 only, 3 timed
calls (``--configs`` / ``--dtypes`` still select). ``--variants`` also times the remat policies
and scan unrolling of ``ModelConfig`` for each selected config and dtype.

The earlier comparison against a bench-only full-backprop recursion (patched in with
``mock.patch``) is gone: the model has no such option, and the one-H-cycle comparison measures
the same saving with the real step.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trm_jax import act, hardware, steps  # noqa: E402
from trm_jax import config as config_lib  # noqa: E402
from trm_jax import sharding as shd  # noqa: E402
from trm_jax.fileio import write_json  # noqa: E402
from trm_jax.model.config import ModelConfig  # noqa: E402
from trm_jax.model.trm import TRMModel, matmul_path  # noqa: E402

# Benchmark name -> (config file, size overrides of its model, global batch).
CONFIGS = {
    "small-att": ("sudoku_att.py", dict(hidden_size=128, num_heads=4), 64),
    "small-mlp": ("sudoku_mlp.py", dict(hidden_size=128, num_heads=4), 64),
    "paper-mlp": ("sudoku_mlp.py", dict(hidden_size=512, num_heads=8), 16),
    "paper-att": ("sudoku_att.py", dict(hidden_size=512, num_heads=8), 16),
}
QUICK_OVERRIDES = dict(hidden_size=64, num_heads=2, batch=8)
DTYPES = ("float32", "bfloat16")
# Sudoku shapes (reference §1): vocabulary, sequence length, puzzle identifiers.
SUDOKU_SHAPES = (11, 81, 1)

# Reference (official PyTorch code, torch 2.13 CPU, 2 threads, 2-core Xeon WITH AMX-BF16;
# medians of 10): train s/step eager, train s/step torch.compile, eval s/step eager.
REFERENCE = {
    ("small-att", "float32"): (2.18, 1.38, 1.26),
    ("small-att", "bfloat16"): (1.51, 1.04, 0.50),
    ("small-mlp", "float32"): (2.32, 1.93, 1.23),
    ("small-mlp", "bfloat16"): (1.11, 0.88, 0.58),
    ("paper-mlp", "float32"): (3.41, 3.09, 1.80),
    ("paper-mlp", "bfloat16"): (1.33, 1.03, 0.75),
    ("paper-att", "bfloat16"): (1.72, 1.26, 0.73),
}

# Targets of issue 6.
WARMUP_MEMORY_RATIO_MAX = 1.2  # train-step temp memory, H_cycles cycles / one cycle
COMPILE_RATIO_MAX = 1.3  # compile time of (3, 6) / (1, 1)
PAPER_MLP_COMPILE_MAX_S = 30.0


# ---- configs and states --------------------------------------------------------------------------


class _Shapes:
    vocab_size, seq_len, num_puzzle_identifiers = SUDOKU_SHAPES


def _config(name: str, batch: int):
    """The config file of a benchmark config, at its size (ml_collections ConfigDict)."""
    filename, sizes, _ = CONFIGS[name]
    c = config_lib.config_module(REPO / "configs" / filename).get_config()
    c.model.update(sizes)
    c.model.puzzle_emb_ndim = c.model.hidden_size
    c.data.global_batch_size = batch
    return c


def model_config(
    name: str, dtype: str, quick: bool = False, **overrides
) -> tuple[ModelConfig, int]:
    """The ModelConfig and batch size of a named benchmark config; ``overrides`` are
    ModelConfig fields (``seq_len`` too) or ``batch``."""
    spec = dict(QUICK_OVERRIDES) if quick else {}
    spec.update(overrides)
    batch = spec.pop("batch", CONFIGS[name][2])
    c = _config(name, batch)
    for k in ("hidden_size", "num_heads"):
        if k in spec:
            c.model[k] = spec.pop(k)
    c.model.puzzle_emb_ndim = c.model.hidden_size
    c.model.forward_dtype = dtype
    cfg = config_lib.model_config(c, _Shapes)
    return dataclasses.replace(cfg, **spec), batch


def train_config(batch: int):
    c = config_lib.default_config()
    c.data.global_batch_size = batch
    c.train.deep_supervision = "carry"
    return config_lib.train_config(c)


def make_batch(cfg: ModelConfig, batch: int, seed: int = 0) -> dict:
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "inputs": jax.random.randint(k1, (batch, cfg.seq_len), 1, cfg.vocab_size),
        "labels": jax.random.randint(k2, (batch, cfg.seq_len), 1, cfg.vocab_size),
        "puzzle_identifiers": jnp.zeros((batch,), jnp.int32),
    }


def abstract_batch(cfg: ModelConfig, batch: int) -> dict:
    return jax.eval_shape(lambda: make_batch(cfg, batch))


def build(cfg: ModelConfig, batch: int) -> steps.Steps:
    """The jitted steps ``trm_jax.train`` runs, for this model on one device."""
    setup = steps.make_setup(TRMModel(cfg), train_config(batch), total_steps=1000)
    return steps.build_steps(setup, shd.make_mesh(1))


def eval_fn(model: TRMModel):
    """One ACT step in evaluation mode; args (variables, table, carry, batch), carry donated."""
    return jax.jit(functools.partial(act.act_step, model, training=False), donate_argnums=2)


# ---- measurements --------------------------------------------------------------------------------


def hlo_instructions(text: str) -> int:
    """Instructions in an HLO / StableHLO text (lines that assign a value)."""
    return len(re.findall(r"^\s*%?\S+ = ", text, flags=re.M))


def _lower_train(cfg: ModelConfig, batch: int):
    built = build(cfg, batch)
    return built.train.lower(built.abstract, abstract_batch(cfg, batch))


def compile_train(cfg: ModelConfig, batch: int):
    """(compiled train step, seconds to trace, lower and compile it, lowered instructions)."""
    t0 = time.perf_counter()
    lowered = _lower_train(cfg, batch)
    compiled = lowered.compile()
    seconds = time.perf_counter() - t0
    return compiled, seconds, hlo_instructions(lowered.as_text())


def train_temp_bytes(cfg: ModelConfig, batch: int) -> int:
    """XLA's temporary-buffer size for the train step (no run)."""
    compiled = compile_train(cfg, batch)[0]
    return int(compiled.memory_analysis().temp_size_in_bytes)


def train_hlo_size(cfg: ModelConfig, batch: int, compile: bool = True) -> dict:
    """Instruction counts of the train step: lowered StableHLO (and optimised HLO)."""
    lowered = _lower_train(cfg, batch)
    sizes = {"lowered": hlo_instructions(lowered.as_text())}
    if compile:
        sizes["optimized"] = hlo_instructions(lowered.compile().as_text())
    return sizes


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", 0.0))


def unrolled(cfg: ModelConfig) -> ModelConfig:
    # XLA's cost analysis counts a loop body once; unrolled, every application is counted.
    return dataclasses.replace(cfg, scan_unroll=max(cfg.H_cycles, cfg.L_cycles, 1))


def xla_flops(cfg: ModelConfig, batch: int) -> tuple[float, float]:
    """(train, eval) FLOPs per step from XLA's cost analysis of the fully unrolled steps."""
    cfg = unrolled(cfg)
    train = _flops(_lower_train(cfg, batch).compile())
    model = TRMModel(cfg)
    state = build(cfg, batch).abstract
    b = abstract_batch(cfg, batch)
    carry = jax.eval_shape(lambda b: act.initial_carry(model, b), b)
    variables = {"params": state.params, "constants": state.constants}
    ev = _flops(eval_fn(model).lower(variables, state.puzzle_table, carry, b).compile())
    return train, ev


def analytic_flops(cfg: ModelConfig, batch: int) -> dict:
    """Matmul FLOPs (2 per multiply-add) of one ACT step: forward, and train (+ backward).

    Backward = 2x the forward of what it differentiates (input and weight gradients): the graded
    cycle's L_cycles + 1 net applications and the heads. Elementwise work is not counted.
    """
    B, S, D, V = batch, cfg.total_len, cfg.hidden_size, cfg.vocab_size
    T = B * S
    inner = cfg.swiglu_width(D)
    channel_mlp = 2 * T * D * 3 * inner  # gate, up, down
    if cfg.mlp_t:
        token_mix = 2 * (B * D) * S * 3 * cfg.swiglu_width(S)
    else:
        width = cfg.num_heads * cfg.head_dim
        projections = 2 * T * D * 4 * width  # q, k, v, o
        token_mix = projections + 2 * 2 * B * cfg.num_heads * S * S * cfg.head_dim
    net = cfg.L_layers * (channel_mlp + token_mix)
    heads = 2 * T * D * V + 2 * B * D * 2
    forward = cfg.net_applications * net + heads
    graded = (cfg.L_cycles + 1) * net + heads
    return {"eval": float(forward), "train": float(forward + 2 * graded)}


def matmul_peak(dtype: str, n: int, reps: int) -> float:
    """Best FLOP/s of an n x n x n matmul: float32, or bfloat16 inputs accumulated in float32."""
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(k2, (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _timed(call, state, reps: int):
    """Run ``state = call(state)`` once to warm up, then ``reps`` times; (wall, cpu) lists."""
    state = jax.block_until_ready(call(state))
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        state = jax.block_until_ready(call(state))
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def time_train(cfg: ModelConfig, batch: int, reps: int) -> dict:
    compiled, compile_s, _ = compile_train(cfg, batch)
    state = build(cfg, batch).init(jax.random.key(0))
    data = make_batch(cfg, batch)
    wall, cpu = _timed(lambda s: compiled(s[0], data), (state, None), reps)
    return {
        "compile_s": compile_s,
        "s": statistics.median(wall),
        "min_s": min(wall),
        "cpu_s": statistics.median(cpu),
        "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes),
    }


def time_eval(cfg: ModelConfig, batch: int, reps: int) -> dict:
    model = TRMModel(cfg)
    state = build(cfg, batch).init(jax.random.key(0))
    variables = {"params": state.params, "constants": state.constants}
    data = make_batch(cfg, batch)
    carry = jax.jit(lambda b: act.initial_carry(model, b))(data)
    t0 = time.perf_counter()
    compiled = eval_fn(model).lower(variables, state.puzzle_table, carry, data).compile()
    compile_s = time.perf_counter() - t0
    wall, cpu = _timed(
        lambda c: compiled(variables, state.puzzle_table, c[0], data), (carry,), reps
    )
    return {
        "compile_s": compile_s,
        "s": statistics.median(wall),
        "min_s": min(wall),
        "cpu_s": statistics.median(cpu),
    }


def bench_row(
    name: str, dtype: str, quick: bool, reps: int, peak: dict, remat: str, unroll: int = 1
) -> dict:
    """One config and dtype; ``peak`` gives the size and repeats of the matmul-peak probe."""
    cfg, batch = model_config(name, dtype, quick, remat=remat, scan_unroll=unroll)
    load_before = os.getloadavg()[0]
    # The load of this shared machine drifts: the peak is measured again next to each row.
    n, peak_reps = peak["n"], peak["reps"]
    peak = {d: matmul_peak(d, n, peak_reps) for d in DTYPES}
    train = time_train(cfg, batch, reps)
    ev = time_eval(cfg, batch, reps)
    # What the warm-up under stop_gradient costs in memory, without rematerialisation (which
    # would hide it): the whole step against the same step with only the graded cycle.
    plain = dataclasses.replace(cfg, remat="none", scan_unroll=1)
    same = remat == "none" and unroll == 1
    temp = train["temp_bytes"] if same else train_temp_bytes(plain, batch)
    one_cycle = train_temp_bytes(dataclasses.replace(plain, H_cycles=1), batch)
    xla_train, xla_eval = xla_flops(cfg, batch)
    ana = analytic_flops(cfg, batch)
    best_peak = max(peak.values())
    row = {
        "config": name,
        "dtype": dtype,
        "remat": remat,
        "scan_unroll": unroll,
        "batch": batch,
        "hidden_size": cfg.hidden_size,
        "seq_len": cfg.total_len,
        "H_cycles": cfg.H_cycles,
        "L_cycles": cfg.L_cycles,
        "train_compile_s": train["compile_s"],
        "train_s": train["s"],
        "train_min_s": train["min_s"],
        "train_cpu_s": train["cpu_s"],
        "eval_compile_s": ev["compile_s"],
        "eval_s": ev["s"],
        "eval_min_s": ev["min_s"],
        "eval_cpu_s": ev["cpu_s"],
        "train_examples_per_s": batch / train["s"],
        "eval_examples_per_s": batch / ev["s"],
        "train_flops_xla": xla_train,
        "train_flops_analytic": ana["train"],
        "eval_flops_xla": xla_eval,
        "eval_flops_analytic": ana["eval"],
        "train_flops_ratio_xla_to_analytic": xla_train / ana["train"],
        "train_flop_per_s": ana["train"] / train["s"],
        "eval_flop_per_s": ana["eval"] / ev["s"],
        # Fraction of the best matmul rate this machine reached (float32 or bf16 -> f32).
        "train_peak_fraction": ana["train"] / train["s"] / best_peak,
        "eval_peak_fraction": ana["eval"] / ev["s"] / best_peak,
        "train_temp_bytes": train["temp_bytes"],
        "train_temp_bytes_no_remat": temp,
        "train_temp_bytes_one_cycle": one_cycle,
        "warmup_memory_ratio": temp / one_cycle,
        "peak_flop_per_s": peak,
        "loadavg_1min": [load_before, os.getloadavg()[0]],
    }
    ref = REFERENCE.get((name, dtype))
    if ref and not quick:
        eager, compiled, ref_eval = ref
        row["reference"] = {"train_eager_s": eager, "train_compile_s": compiled, "eval_s": ref_eval}
        row["speedup_vs_eager"] = eager / train["s"]
        row["speedup_vs_compile"] = compiled / train["s"]
        row["eval_speedup_vs_eager"] = ref_eval / ev["s"]
    return row


def bench_cycles(name: str, dtype: str, quick: bool, repeats: int, remat: str) -> dict:
    """Compile time and HLO size of the train step for (H, L) = (1, 1) against (3, 6)."""
    out = {"config": name, "dtype": dtype, "remat": remat}
    for H, L in ((1, 1), (3, 6)):
        cfg, batch = model_config(name, dtype, quick, H_cycles=H, L_cycles=L, remat=remat)
        runs = [compile_train(cfg, batch) for _ in range(repeats)]
        compiled, _, lowered = runs[-1]
        out[f"h{H}l{L}"] = {
            "compile_s": min(r[1] for r in runs),
            "lowered": lowered,
            "optimized": hlo_instructions(compiled.as_text()),
        }
    small, big = out["h1l1"], out["h3l6"]
    out["compile_ratio"] = big["compile_s"] / small["compile_s"]
    out["hlo_ratio"] = big["optimized"] / small["optimized"]
    out["lowered_ratio"] = big["lowered"] / small["lowered"]
    return out


def bench_variants(name: str, dtype: str, quick: bool, reps: int) -> list[dict]:
    """Train-step time and memory for each remat policy and scan unrolling."""
    rows = []
    steps_per_cycle = model_config(name, dtype, quick)[0].L_cycles + 1  # fully unrolled
    variants = [
        ("none", 1),
        ("block", 1),
        ("full", 1),
        ("dots", 1),
        ("none", 2),
        ("none", steps_per_cycle),
    ]
    for remat, unroll in variants:
        cfg, batch = model_config(name, dtype, quick, remat=remat, scan_unroll=unroll)
        t = time_train(cfg, batch, reps)
        rows.append(
            {
                "config": name,
                "dtype": dtype,
                "remat": remat,
                "scan_unroll": unroll,
                "train_s": t["s"],
                "train_cpu_s": t["cpu_s"],
                "train_compile_s": t["compile_s"],
                "train_temp_bytes": t["temp_bytes"],
            }
        )
    return rows


def machine() -> dict:
    flags = set()
    model = platform.processor()
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"model name\s*:\s*(.*)", text)
        model = found.group(1) if found else model
        line = re.search(r"^flags\s*:\s*(.*)$", text, flags=re.M)
        flags = set(line.group(1).split()) if line else set()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "avx512f": "avx512f" in flags,
        "bf16_units": hardware.bf16_units(frozenset(flags)),
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # glibc.malloc.hugetlb=1 backs XLA's per-step temp buffers with huge pages.
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }


# ---- report --------------------------------------------------------------------------------------


def _ratio(x) -> str:
    return f"{x:.2f}x" if x is not None else "-"


def print_report(result: dict) -> None:
    m, peak = result["machine"], result["peak_flop_per_s"]
    print(
        f"\n{m['cpu']}, {m['cores']} cores, bf16 units: {m.get('bf16_units', '?')}, "
        f"backend {m['backend']}, "
        f"jax {m['jax']}; matmul peak float32 {peak['float32'] / 1e9:.0f} GFLOP/s, "
        f"bf16->f32 {peak['bfloat16'] / 1e9:.0f} GFLOP/s"
    )
    head = (
        f"{'config':10} {'dtype':8} {'B':>3} {'compile':>7} {'train s':>8} {'cpu s':>6} "
        f"{'eval s':>7} {'ex/s':>6} {'GFLOP':>7} {'xla/ana':>7} {'GFLOP/s':>7} {'pk f32':>6} "
        f"{'peak':>5} {'mem':>5} {'ref eager':>9} {'ref comp':>8} {'x eager':>7} {'x comp':>6} "
        f"{'x eval':>6}  matmul path"
    )
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        ref = r.get("reference", {})
        print(
            f"{r['config']:10} {r['dtype']:8} {r['batch']:>3} {r['train_compile_s']:>6.1f}s "
            f"{r['train_s']:>8.3f} {r['train_cpu_s']:>6.2f} {r['eval_s']:>7.3f} "
            f"{r['train_examples_per_s']:>6.1f} {r['train_flops_analytic'] / 1e9:>7.1f} "
            f"{r['train_flops_ratio_xla_to_analytic']:>7.2f} {r['train_flop_per_s'] / 1e9:>7.0f} "
            f"{r['peak_flop_per_s']['float32'] / 1e9:>6.0f} "
            f"{r['train_peak_fraction']:>5.0%} {r['warmup_memory_ratio']:>5.2f} "
            f"{ref.get('train_eager_s', float('nan')):>9.2f} "
            f"{ref.get('train_compile_s', float('nan')):>8.2f} "
            f"{_ratio(r.get('speedup_vs_eager')):>7} {_ratio(r.get('speedup_vs_compile')):>6} "
            f"{_ratio(r.get('eval_speedup_vs_eager')):>6}  "
            f"{matmul_path(model_config(r['config'], r['dtype'], result.get('quick', False))[0])}"
        )
    print(
        "\ntrain s / eval s: median wall time per step; cpu s: process CPU time per train step; "
        "GFLOP: analytic matmul FLOPs per train step;\nxla/ana: XLA cost analysis (unrolled) over "
        "analytic; pk f32: float32 matmul peak (GFLOP/s) measured next to the row; peak: achieved "
        "FLOP/s over the best matmul peak of that probe; mem: train temp memory\nof all H "
        "cycles over one H cycle (warm-up under stop_gradient); x eager / x comp / x eval: "
        "reference time over ours (> 1: we are faster); matmul path: bf16->f32 = bf16 operands, "
        "float32 results\n(NN-form gradients on CPUs with bf16 units), bf16 upcast to f32 = "
        "float32 products of bf16 values (CPUs without).\n"
        "The reference ran on a CPU WITH AMX-BF16; "
        "bfloat16 rows are not like for like when this machine has none."
    )
    if result["cycles"]:
        print(
            f"\n{'config':10} {'dtype':8} {'compile (1,1)':>13} {'compile (3,6)':>13} "
            f"{'ratio':>6} {'HLO (1,1)':>9} {'HLO (3,6)':>9} {'ratio':>6}"
        )
        for c in result["cycles"]:
            a, b = c["h1l1"], c["h3l6"]
            print(
                f"{c['config']:10} {c['dtype']:8} {a['compile_s']:>12.1f}s "
                f"{b['compile_s']:>12.1f}s "
                f"{c['compile_ratio']:>6.2f} {a['optimized']:>9} {b['optimized']:>9} "
                f"{c['hlo_ratio']:>6.2f}"
            )
    if result["variants"]:
        print(
            f"\n{'config':10} {'dtype':8} {'remat':6} {'unroll':>6} {'train s':>8} "
            f"{'cpu s':>6} {'compile':>8} {'temp MB':>8}"
        )
        for v in result["variants"]:
            print(
                f"{v['config']:10} {v['dtype']:8} {v['remat']:6} {v['scan_unroll']:>6} "
                f"{v['train_s']:>8.3f} {v['train_cpu_s']:>6.2f} {v['train_compile_s']:>7.1f}s "
                f"{v['train_temp_bytes'] / 2**20:>8.0f}"
            )
    print("\nrequirements:")
    for k, v in result["requirements"].items():
        print(f"  {k}: {v}")


def requirements(result: dict) -> dict:
    rows, cycles = result["rows"], result["cycles"]
    req = {}
    if rows:
        worst = max(r["warmup_memory_ratio"] for r in rows)
        req["warmup_memory_ratio_max"] = {
            "value": worst,
            "limit": WARMUP_MEMORY_RATIO_MAX,
            "ok": worst <= WARMUP_MEMORY_RATIO_MAX,
        }
    if cycles:
        worst = max(c["compile_ratio"] for c in cycles)
        req["compile_ratio_max"] = {
            "value": worst,
            "limit": COMPILE_RATIO_MAX,
            "ok": worst <= COMPILE_RATIO_MAX,
        }
    paper = [r for r in rows if r["config"] == "paper-mlp"]
    if paper and not result["quick"]:
        worst = max(r["train_compile_s"] for r in paper)
        req["paper_mlp_compile_s"] = {
            "value": worst,
            "limit": PAPER_MLP_COMPILE_MAX_S,
            "ok": worst <= PAPER_MLP_COMPILE_MAX_S,
        }
    return req


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=None, help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--dtypes", default=None, help="comma list of float32, bfloat16")
    p.add_argument("--reps", type=int, default=None, help="timed calls per step (default 10)")
    p.add_argument("--quick", action="store_true", help="small shapes, few reps (< 2 minutes)")
    p.add_argument("--remat", default="full", help="remat policy of the timed steps")
    p.add_argument("--scan-unroll", type=int, default=1, help="scan unrolling of the timed steps")
    p.add_argument("--variants", action="store_true", help="also time remat and scan unrolling")
    p.add_argument("--no-cycles", action="store_true", help="skip the (1,1) vs (3,6) compile test")
    p.add_argument("--out", default=None, help="write the results as JSON to this file")
    a = p.parse_args(argv)

    default_configs = "small-mlp" if a.quick else ",".join(CONFIGS)
    names = (a.configs or default_configs).split(",")
    dtypes = (a.dtypes or ("float32" if a.quick else ",".join(DTYPES))).split(",")
    for n in names:
        if n not in CONFIGS:
            print(f"Unknown config {n!r}; expected one of {', '.join(CONFIGS)}.", file=sys.stderr)
            return 2
    for d in dtypes:
        if d not in DTYPES:
            print(f"Unknown dtype {d!r}; expected one of {', '.join(DTYPES)}.", file=sys.stderr)
            return 2
    reps = a.reps or (3 if a.quick else 10)

    start = time.perf_counter()
    n, peak_reps = (1024, 3) if a.quick else (2048, 5)
    peak = {d: matmul_peak(d, n, peak_reps) for d in DTYPES}
    result = {
        "machine": machine(),
        "quick": a.quick,
        "reps": reps,
        "peak_flop_per_s": peak,
        "rows": [],
        "cycles": [],
        "variants": [],
    }
    for name in names:
        for dtype in dtypes:
            row = bench_row(
                name, dtype, a.quick, reps, dict(n=n, reps=peak_reps), a.remat, a.scan_unroll
            )
            result["rows"].append(row)
            print(
                f"{name} {dtype}: train {row['train_s']:.3f} s, eval {row['eval_s']:.3f} s, "
                f"compile {row['train_compile_s']:.1f} s",
                flush=True,
            )
        if not a.no_cycles:
            result["cycles"].append(
                bench_cycles(name, dtypes[0], a.quick, 1 if a.quick else 2, a.remat)
            )
        if a.variants:
            for dtype in dtypes:
                result["variants"].extend(bench_variants(name, dtype, a.quick, max(3, reps // 2)))
    result["requirements"] = requirements(result)
    result["wall_s"] = time.perf_counter() - start
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    print_report(result)
    if a.out:
        write_json(a.out, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
