"""trm_jax: Tiny Recursive Models (TRM, arXiv 2510.04871) in JAX/Flax.

Train with ``python -m trm_jax.train``, score with ``python -m trm_jax.evaluate`` and solve single
puzzles with ``python -m trm_jax.solve``. From Python::

    import trm_jax
    trm = trm_jax.load("runs/sudoku-cpu")     # a work dir (latest step) or .../checkpoints/<N>
    answer, trace = trm.solve("<81 characters>", halting="adaptive", trace=True)

Importing the package is light: JAX, orbax and matplotlib load only when first used.
"""

__all__ = ["load"]


def load(path, step=None, *, ema=None):
    """Load a trained run; see :func:`trm_jax.inference.load` (returns a ``TRM``)."""
    from trm_jax.inference import load as _load

    return _load(path, step, ema=ema)
