"""Multi-z TRM (configs/sudoku_hier6.py) with the latents entering as their mean, not their sum.

The reference sums z_H's six low-level latents (``trm_hier6``); with six latents of RMS ~1 the sum
outweighs the input embedding in every update, and at CPU scale the reference form does not learn
(docs/ablation-cpu.md, "Multi-z"). ``model.latent_sum = "mean"`` (a trm_jax option) is the fix
measured there. Data: as configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_hier6_mean.py --workdir=runs/sudoku_hier6_mean
Ablation (scripts/ablate.py variant ``multi-z-mean``): docs/ablation-cpu.md.
Hardware: 1x L40S-class GPU, < 36 h (as configs/sudoku_mlp.py). Expected: no paper figure (the
variant is ours); at CPU scale 95.3% exact against the reference form's 84.4% after 5 minutes
(docs/ablation-cpu.md, "Session 5"). 5,028,866 parameters; effective depth 42 blocks per
supervision step.
"""

import os

from trm_jax.config import config_module

_HERE = os.path.dirname(os.path.abspath(__file__))


def variant(c):
    """Multi-z (configs/sudoku_hier6.py) with ``model.latent_sum = "mean"``."""
    c = config_module(os.path.join(_HERE, "sudoku_hier6.py")).variant(c)
    c.model.latent_sum = "mean"
    return c


def get_config():
    # The training setup of configs/sudoku_mlp.py, then this variant's override.
    return variant(config_module(os.path.join(_HERE, "sudoku_mlp.py")).get_config())
