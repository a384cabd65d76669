"""Which matmul forms reach this machine's fast kernels (issue 15, item 4).

    .venv/bin/python scripts/dot_forms.py [--quick] [--reps 20] [--out FILE]

Times, in one run, each form of the products the TRM train step makes (best of ``--reps`` calls
of one jitted op, after a warm-up), for the shapes of the paper configs' dense layers
(M tokens x K in -> N out; 6208 = 64 x 97 tokens of small-mlp, 1552 = 16 x 97 of paper-mlp):

* ``f32``           x @ w, float32 operands and result;
* ``bf16->bf16``    bfloat16 operands, bfloat16 result;
* ``bf16->f32``     bfloat16 operands, float32 result (``preferred_element_type``);
* ``xT.dy f32``     the weight gradient dW = x^T dy as one dot contracting the token axis of
                    both operands (the form autodiff emits), float32;
* ``xT.dy bf16->f32`` the same with bfloat16 operands and a float32 result;
* ``NN bf16->f32``  the weight gradient as the model computes it on CPUs with bf16 units
                    (``layers.weight_grad``): the narrower of x and dy transposed into a copy
                    XLA cannot fold back into the dot, then one row-major NN product, the only
                    form XLA:CPU runs in bf16 (it upcasts the others to float32).

plus ``silu(g) * u`` on [M, N] in float32 and in bfloat16. GFLOP/s = 2 M K N / time. The report
also names the CPU, its bf16 units (:mod:`trm_jax.hardware`), the backend and the machine's
load average, since other jobs on the cores lower every figure. ``--quick`` (a few seconds): two
small shapes, 3 calls each, for tests. The JSON goes to stdout after the table, or to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trm_jax import hardware  # noqa: E402
from trm_jax.fileio import write_json  # noqa: E402
from trm_jax.model import layers  # noqa: E402

SHAPES = ((6208, 128, 512), (6208, 512, 128), (1552, 512, 2048), (1552, 2048, 512))
QUICK_SHAPES = ((256, 64, 128), (128, 128, 64))
FORMS = ("f32", "bf16->bf16", "bf16->f32", "xT.dy f32", "xT.dy bf16->f32", "NN bf16->f32")
_TN = (((0,), (0,)), ((), ()))  # contract the token axis of x [M, K] and dy [M, N]


def _forward(dtype, out_dtype):
    def f(x_MxK, w_KxN):
        return jnp.dot(x_MxK, w_KxN, preferred_element_type=out_dtype)

    return f, dtype


def _tn(dtype):
    def f(x_MxK, dy_MxN):
        return jax.lax.dot_general(x_MxK, dy_MxN, _TN, preferred_element_type=jnp.float32)

    return f, dtype


def _nn(x_MxK, dy_MxN):
    return layers.weight_grad(x_MxK, dy_MxN)


def form_fn(form: str):
    """(function of two operands, operand dtype) for a form; operands are [M,K] and [K,N] or
    [M,K] and [M,N] (weight-gradient forms)."""
    return {
        "f32": lambda: _forward(jnp.float32, jnp.float32),
        "bf16->bf16": lambda: _forward(jnp.bfloat16, jnp.bfloat16),
        "bf16->f32": lambda: _forward(jnp.bfloat16, jnp.float32),
        "xT.dy f32": lambda: _tn(jnp.float32),
        "xT.dy bf16->f32": lambda: _tn(jnp.bfloat16),
        "NN bf16->f32": lambda: (_nn, jnp.bfloat16),
    }[form]()


def best_time(fn, args, reps: int) -> float:
    """Best wall time of ``reps`` calls of the compiled ``fn`` (after one warm-up call)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def measure(shapes, reps: int) -> dict:
    key = jax.random.PRNGKey(0)
    rows = []
    for M, K, N in shapes:
        ka, kb, kc = jax.random.split(jax.random.fold_in(key, M * K + N), 3)
        x = jax.random.normal(ka, (M, K), jnp.float32)
        w = jax.random.normal(kb, (K, N), jnp.float32)
        dy = jax.random.normal(kc, (M, N), jnp.float32)
        row = {"M": M, "K": K, "N": N, "gflop_per_s": {}}
        for form in FORMS:
            f, dt = form_fn(form)
            second = dy if form.startswith(("xT", "NN")) else w
            args = (x.astype(dt), second.astype(dt))
            seconds = best_time(jax.jit(f), args, reps)
            row["gflop_per_s"][form] = round(2 * M * K * N / seconds / 1e9, 1)
        rows.append(row)
    M, _, N = shapes[0]
    g = jax.random.normal(key, (M, N), jnp.float32)
    u = jax.random.normal(jax.random.fold_in(key, 1), (M, N), jnp.float32)
    swiglu = jax.jit(lambda g, u: jax.nn.silu(g) * u)
    elementwise = {"shape": [M, N]}
    for name, dt in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        ms = best_time(swiglu, (g.astype(dt), u.astype(dt)), reps) * 1e3
        elementwise[f"silu_mul_ms_{name}"] = round(ms, 3)
    return {"dots": rows, "elementwise": elementwise}


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": hardware.cpu_model(),
        "cores": os.cpu_count(),
        "bf16_units": hardware.bf16_units(),
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "jax": jax.__version__,
        "load_average_1_5_15": [round(x, 2) for x in load],
    }


def table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"{m['cpu']}, {m['cores']} cores, bf16 units: {m['bf16_units']}, backend "
        f"{m['backend']}, jax {m['jax']}, load average {m['load_average_1_5_15']}",
        f"GFLOP/s, best of {result['reps']}:",
        "| M, K, N | " + " | ".join(FORMS) + " |",
        "|---|" + "---|" * len(FORMS),
    ]
    for r in result["dots"]:
        vals = " | ".join(f"{r['gflop_per_s'][f]:.0f}" for f in FORMS)
        lines.append(f"| {r['M']}, {r['K']}, {r['N']} | {vals} |")
    e = result["elementwise"]
    lines.append(
        f"silu(g) * u on {e['shape']}: {e['silu_mul_ms_float32']:.2f} ms float32, "
        f"{e['silu_mul_ms_bfloat16']:.2f} ms bfloat16"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="two small shapes, 3 calls (tests)")
    p.add_argument("--reps", type=int, default=None, help="timed calls per op (default 20)")
    p.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    args = p.parse_args(argv)
    reps = args.reps if args.reps is not None else (3 if args.quick else 20)
    if reps < 1:
        print(f"--reps must be >= 1, got {reps}.", file=sys.stderr)
        return 2
    shapes = QUICK_SHAPES if args.quick else SHAPES
    result = {"machine": machine(), "reps": reps, **measure(shapes, reps)}
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(table(result))
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
