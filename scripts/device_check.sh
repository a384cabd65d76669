#!/usr/bin/env bash
# One prepared GPU check (issue 15, item 5): parity on the GPU, bench.py on the paper configs in
# bfloat16 with MFU against the GPU's measured bf16 matmul peak, and a few minutes of paper-mlp
# Sudoku training reporting examples/s. Writes DIR/device_check.json and DIR/device_check.md
# (plus the logs and bench.json) and exits 0 when every step ran.
#
#   scripts/device_check.sh DIR [--dry-run]        (or DRY_RUN=1 scripts/device_check.sh DIR)
#
# Budget: under 8 minutes on one H200 (each step has its own timeout; a step that fails or times
# out is recorded and the next one runs). --dry-run runs the same steps on the CPU with tiny
# sizes (one golden folder, bench --quick, a 4-step training run) for tests/test_device_check.py.
#
# The device image (Python 3.12, JAX 0.11.2 CUDA, flax, optax, orbax-checkpoint, chex) lacks
# grain, array-record, portpicker, ml-collections and tensorboardX; they travel as wheels in
# .whl/ (git-ignored). Prepare them once, here, in the repo root (network needed; not done by
# this script):
#
#   echo /.whl/ >> .git/info/exclude; echo /.device-shared/ >> .git/info/exclude
#   for p in grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 ml-collections==1.1.0 \
#            tensorboardX==2.6.5; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       --platform manylinux1_x86_64 -d .whl "$p"
#   done
#   mkdir -p .device-shared && cp -r "$TRM_SHARED_DIR/golden" .device-shared/   # 25 MB
#
# Our package itself travels as the working tree (PYTHONPATH=.); no wheel needed. Then call it
# with the device tool (one call, ~8 minutes):
#
#   run(command="bash scripts/device_check.sh $OUT/check", carry=[".whl", ".device-shared"],
#       timeout_s=560)
#
# and copy the returned check/device_check.md into the performance document.
set -u -o pipefail

DIR=""
DRY=${DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    -*) echo "device_check.sh: unknown option $arg (usage: device_check.sh DIR [--dry-run])." >&2
        exit 2 ;;
    *) DIR=$arg ;;
  esac
done
if [ -z "$DIR" ]; then
  echo "device_check.sh: give the output folder (usage: device_check.sh DIR [--dry-run])." >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
mkdir -p "$DIR" || { echo "device_check.sh: cannot create $DIR." >&2; exit 2; }
DIR=$(cd "$DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/trm-device-check.XXXXXX")
START=$(date +%s)

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

if [ "$DRY" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > "$DIR/setup.log" 2>&1 \
    || { echo "device_check.sh: installing .whl/ failed (see $DIR/setup.log)." >&2; exit 1; }
  export PYTHONPATH=/tmp/site:$ROOT
else
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -d .device-shared/golden ]; then export TRM_SHARED_DIR=$ROOT/.device-shared
elif [ -z "${TRM_SHARED_DIR:-}" ] && [ -d shared/golden ]; then export TRM_SHARED_DIR=$ROOT/shared
fi
export PYTHONUNBUFFERED=1

if [ "$DRY" = 1 ]; then
  export JAX_PLATFORMS=cpu
  PARITY_K=(-k "trm_mlp_t_tiny")
  BENCH=(--quick --configs paper-mlp --dtypes bfloat16 --reps 1 --no-cycles)
  PEAK_N=256
  DATA=(--num-train 16 --num-test 8 --givens 45)
  TRAIN=(--config.model.hidden_size=32 --config.model.puzzle_emb_ndim=32
         --config.model.num_heads=2 --config.model.H_cycles=1 --config.model.L_cycles=1
         --config.model.halt_max_steps=2 --config.data.global_batch_size=8
         --config.train.max_steps=4 --config.train.time_budget_s=60 --config.train.log_every=1
         --config.data.eval_max_examples=8)
  T_PARITY=600; T_BENCH=600; T_TRAIN=600
else
  PARITY_K=()
  BENCH=(--configs paper-mlp,paper-att --dtypes bfloat16 --reps 5 --no-cycles)
  PEAK_N=8192
  DATA=(--num-train 1000 --num-test 256 --givens 34 --workers 8)
  TRAIN=(--config.train.time_budget_s=110 --config.train.log_every=20
         --config.data.eval_max_examples=256)
  # Worst case 120 + 150 + 120 (data, usually ~10) + 160 s; usually well under 8 minutes.
  T_PARITY=120; T_BENCH=150; T_TRAIN=160
fi

declare -A STATUS SECONDS_TAKEN
step() {  # step NAME TIMEOUT_S COMMAND... ; output to DIR/NAME.log
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  timeout "$limit" "$@" > "$DIR/$name.log" 2>&1
  local rc=$?
  SECONDS_TAKEN[$name]=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then STATUS[$name]=ok
  elif [ $rc -eq 124 ]; then STATUS[$name]="timed out after ${limit}s"
  else STATUS[$name]="failed (exit $rc)"; fi
  echo "[device_check] $name: ${STATUS[$name]} in ${SECONDS_TAKEN[$name]}s"
}

# 1. Parity on the device, float32 matmuls at full precision (the default on GPUs may be TF32).
JAX_DEFAULT_MATMUL_PRECISION=highest step parity "$T_PARITY" \
  "$PY" -m pytest -q -p no:cacheprovider tests/test_parity.py "${PARITY_K[@]}"
# 2. The train and eval steps of the paper configs in bf16 (bench.py's own table and JSON).
step bench "$T_BENCH" "$PY" scripts/bench.py "${BENCH[@]}" --out "$DIR/bench.json"
# 3. Sudoku data (34 givens, the harder main-job data of issue 16), then a few minutes of paper-mlp training.
step data 60 "$PY" -m data_gen.sudoku build --out "$WORK/data" "${DATA[@]}" --seed 0 --quiet
step train "$T_TRAIN" "$PY" -m trm_jax.train --config=configs/sudoku_mlp.py \
  --workdir="$WORK/run" --config.data.path="$WORK/data" \
  "${TRAIN[@]}"

# 4. The GPU's bf16 matmul peak, MFU, and the summary (JSON + markdown table).
export DC_DIR=$DIR DC_WORK=$WORK DC_PEAK_N=$PEAK_N DC_DRY=$DRY DC_START=$START
export DC_STATUS
DC_STATUS=$(for k in parity bench data train; do printf '%s=%s=%s\n' "$k" "${STATUS[$k]}" \
  "${SECONDS_TAKEN[$k]}"; done)
"$PY" - <<'EOF'
import glob
import json
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.getcwd())
import jax
import jax.numpy as jnp

from trm_jax.fileio import write_json, write_text

out = os.environ["DC_DIR"]
status = {}
for line in os.environ["DC_STATUS"].splitlines():
    name, state, secs = line.split("=")
    status[name] = {"status": state, "seconds": int(secs)}

# bf16 x bf16 -> f32 matmul peak: best of 10 after a warm-up.
n = int(os.environ["DC_PEAK_N"])
a = jnp.ones((n, n), jnp.bfloat16)
mm = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
mm(a, a).block_until_ready()
best = float("inf")
for _ in range(10):
    t = time.perf_counter()
    mm(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t)
peak = 2 * n**3 / best

result = {
    "dry_run": os.environ["DC_DRY"] == "1",
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "devices": [d.device_kind for d in jax.devices()],
    "bf16_matmul_peak_flop_per_s": peak,
    "peak_matmul_size": n,
    "steps": status,
}

# Parity: pytest's summary line.
log = open(os.path.join(out, "parity.log")).read() if os.path.exists(os.path.join(out, "parity.log")) else ""
found = re.findall(r"(\d+) (passed|failed|skipped|error)", log)
result["parity"] = {k: int(v) for v, k in found}

# Bench rows with MFU against the measured peak.
rows = []
bench_path = os.path.join(out, "bench.json")
if os.path.exists(bench_path):
    for r in json.load(open(bench_path)).get("rows", []):
        flops = r.get("train_flops_analytic") or r.get("train_flops_xla")
        rows.append({
            "config": r["config"], "dtype": r["dtype"], "batch": r["batch"],
            "train_s": r["train_s"], "eval_s": r["eval_s"],
            "train_examples_per_s": r["train_examples_per_s"],
            "train_tflop_per_s": flops / r["train_s"] / 1e12,
            "mfu": flops / r["train_s"] / peak,
            "eval_mfu": (r.get("eval_flops_analytic") or r["eval_flops_xla"]) / r["eval_s"] / peak,
        })
result["bench"] = rows


def scalars(events_dir, tag):
    """Values of one scalar tag from tensorboardX event files (TFRecord framing)."""
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:
        return []
    values = []
    for path in sorted(glob.glob(os.path.join(events_dir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        data = open(path, "rb").read()
        i = 0
        while i + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            record = data[i + 12 : i + 12 + length]
            i += 12 + length + 4
            ev = event_pb2.Event()
            ev.ParseFromString(record)
            for v in ev.summary.value:
                if v.tag == tag:
                    values.append((ev.step, v.simple_value))
    return values


run = os.path.join(os.environ["DC_WORK"], "run")
eps = scalars(run, "train/examples_per_second")
steps = [s for s, _ in eps]
train = {"logged": len(eps)}
if eps:
    later = [v for _, v in eps[1:]] or [v for _, v in eps]  # the first window holds the compile
    later.sort()
    train.update(steps=max(steps), examples_per_s_median=later[len(later) // 2],
                 examples_per_s_best=later[-1], windows_used=len(later))
train_log = os.path.join(out, "train.log")
if os.path.exists(train_log):
    text = open(train_log).read()
    m = re.findall(r"forward dtype: [^\n]*", text)
    if m:
        train["forward_dtype"] = m[-1]
result["train"] = train
result["wall_s"] = time.time() - int(os.environ["DC_START"])
write_json(os.path.join(out, "device_check.json"), result)

lines = [
    f"## GPU check ({'dry run, CPU' if result['dry_run'] else 'device'}): "
    f"{', '.join(result['devices'])}, jax {result['jax']}",
    "",
    f"bf16 x bf16 -> f32 matmul peak ({n}^3, best of 10): {peak / 1e12:.1f} TFLOP/s. "
    f"Parity: {result['parity'] or 'no result'}. Wall time {result['wall_s']:.0f} s.",
    "",
    "| step | status | s |",
    "|---|---|---|",
]
lines += [f"| {k} | {v['status']} | {v['seconds']} |" for k, v in status.items()]
lines += ["", "| config | dtype | B | train s | eval s | train ex/s | TFLOP/s | MFU | eval MFU |",
          "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(
        f"| {r['config']} | {r['dtype']} | {r['batch']} | {r['train_s']:.4f} | {r['eval_s']:.4f} "
        f"| {r['train_examples_per_s']:.0f} | {r['train_tflop_per_s']:.1f} | {r['mfu']:.1%} "
        f"| {r['eval_mfu']:.1%} |"
    )
if eps:
    lines += ["", f"paper-mlp Sudoku training: {train['steps']} steps, examples/s median "
              f"{train['examples_per_s_median']:.0f} (best {train['examples_per_s_best']:.0f}) "
              f"over {train['windows_used']} log windows (the first, with the compile, left out)."]
else:
    lines += ["", "paper-mlp Sudoku training: no examples/s logged (see train.log)."]
write_text(os.path.join(out, "device_check.md"), "\n".join(lines) + "\n")
print("\n".join(lines))
EOF
rc=$?
rm -rf "$WORK"
[ $rc -eq 0 ] || { echo "device_check.sh: the summary failed." >&2; exit 1; }
for k in "${!STATUS[@]}"; do [ "${STATUS[$k]}" = ok ] || exit 1; done
exit 0
