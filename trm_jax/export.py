"""python -m trm_jax.export --workdir DIR --out FILE [--batch-size B] [settings]

Writes the solver of a trained checkpoint, its weights and its inference settings
(:class:`trm_jax.test_time.InferenceSettings`: ``--steps``, ``--samples``, ``--sigma``,
``--select``, ``--seed``) as one serialized ``jax.export`` artifact (StableHLO) for a fixed batch
size and the platform it was exported on, plus ``FILE.json`` describing it. Loading it needs only
JAX, not ``trm_jax``::

    import jax, numpy as np
    solve = jax.export.deserialize(open("sudoku.jaxexport", "rb").read())
    answer, q_halt, steps = solve.call(inputs, puzzle_ids)
    # inputs int32 [B, L] tokens, puzzle_ids int32 [B] (0 for Sudoku and mazes):
    # answer int32 [B, L] tokens, q_halt float32 [B], steps int32 [B] (supervision steps run)

Tokens are the dataset's (Sudoku: 1 = blank, 2..10 = digits 1..9; see ``FILE.json``). ``verify``
needs a rule check on the host and cannot be exported. Bad arguments stop with one sentence and
exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from trm_jax import fileio
from trm_jax import rollout as ro
from trm_jax import test_time as tt
from trm_jax.checkpoint import CheckpointError
from trm_jax.guards import CliParser
from trm_jax.test_time import InferenceSettings, SettingsError

__all__ = ["export", "main"]

FORMAT = "trm_jax.export/1"


def export(
    trm,
    out: str | os.PathLike,
    batch_size: int = 1,
    settings: InferenceSettings | None = None,
) -> Path:
    """Serialize ``trm``'s solver (weights and ``settings`` baked in) for ``batch_size`` puzzles.

    ``trm`` is a loaded model (:func:`trm_jax.load`); ``settings`` default to the reference.
    Writes ``out`` (the artifact) and ``out.json`` (settings, shapes, token map) atomically;
    returns the artifact's path.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise SettingsError(f"batch size must be an integer >= 1, got {batch_size!r}.")
    settings = (settings or InferenceSettings()).for_task(trm.task)
    fn = ro.solver(trm.model, trm.variables, trm.puzzle_table, settings)
    L = trm.model_config.seq_len
    specs = (
        jax.ShapeDtypeStruct((batch_size, L), jnp.int32),
        jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    )
    exported = jax.export.export(jax.jit(fn))(*specs)
    out = Path(out)
    fileio.write_bytes(out, bytes(exported.serialize()))
    c = trm.model_config
    fileio.write_json(
        out.with_name(out.name + ".json"),
        {
            "format": FORMAT,
            "checkpoint": str(trm.info.path),
            "step": trm.step,
            "task": trm.task,
            "batch_size": batch_size,
            "seq_len": L,
            "vocab_size": c.vocab_size,
            "platforms": list(exported.platforms),
            "settings": {
                "steps": settings.num_steps(c),
                "samples": settings.samples,
                "sigma": settings.sigma,
                "noise_at": settings.noise_at,
                "select": settings.select,
                "seed": settings.seed,
            },
            "weights": "ema" if trm.use_ema else "raw",
            "inputs": ["int32 [batch_size, seq_len] tokens", "int32 [batch_size] puzzle ids"],
            "outputs": ["int32 answer tokens", "float32 q_halt", "int32 steps run"],
            "tokens": _token_note(trm.task),
        },
    )
    return out


def _token_note(task: str | None) -> str:
    return {
        "sudoku": "0 pad, 1 blank, 2..10 the digits 1..9",
        "maze": "0 pad, 1 '#', 2 ' ', 3 'S', 4 'G', 5 'o' (path)",
        "arc": "0 pad, 1 end of row/grid, 2..11 the colours 0..9 on a 30x30 canvas",
    }.get(task or "", "the dataset's tokens")


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="python -m trm_jax.export", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="training work dir or .../checkpoints/<N>")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--out", required=True, help="artifact file to write")
    p.add_argument("--batch-size", type=int, default=1, help="puzzles per call (fixed)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None)
    tt.add_settings_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trm_jax import inference

    try:
        settings = tt.settings_from_args(args)
        if args.verify:
            raise SettingsError(
                "verify runs a rule check outside the model; it cannot be exported."
            )
        if args.batch_size < 1:
            raise SettingsError(f"--batch-size must be >= 1, got {args.batch_size}.")
        out = Path(args.out)
        if out.is_dir():
            raise SettingsError(f"--out {out} is a directory; give a file name.")
        trm = inference.load(args.workdir, args.step, ema=args.ema)
        path = export(trm, out, args.batch_size, settings)
    except (CheckpointError, SettingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes) and {path.name}.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
