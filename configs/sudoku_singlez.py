"""TRM with a single latent (``trm_singlez``) on Sudoku-Extreme: the paper's "single z" ablation.

Only z_L is carried: per cycle ``z = net(z + x)`` L_cycles times, then ``z = net(z)``; the heads
read z (reference §4). Otherwise configs/sudoku_mlp.py (token-MLP, T=3, n=6). Data: as
configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_singlez.py --workdir=runs/sudoku_singlez
Ablation (scripts/ablate.py variant ``single-z``): see docs/ablation.md.
Hardware: 1x L40S-class GPU, < 36 h (as configs/sudoku_mlp.py). Expected: no figure in reference
§7; the paper's z-ablation table reports single z well below TRM's 87.4% (see the paper for its
figure). CPU-scale result: docs/ablation-cpu.md. 5,028,866 parameters; effective depth 42 blocks
per supervision step.
"""

import os

from trm_jax.config import config_module


def variant(c):
    """One latent instead of (y, z); everything else unchanged."""
    c.model.arch = "trm_singlez"
    return c


def get_config():
    # The training setup of configs/sudoku_mlp.py, then this variant's override.
    base = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sudoku_mlp.py"))
    return variant(base.get_config())
