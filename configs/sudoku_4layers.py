"""TRM with 4 layers and n = 3 on Sudoku-Extreme: the paper's "4 layers" ablation.

Twice the layers of configs/sudoku_mlp.py (L_layers 4) and half the latent updates (n = L_cycles
3, T = 3), so the effective depth stays close (48 against 42 blocks per supervision step).
Data: as configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_4layers.py --workdir=runs/sudoku_4layers
Ablation (scripts/ablate.py variant ``4-layers``): see docs/ablation.md.
Hardware: 1x L40S-class GPU (as configs/sudoku_mlp.py). Expected: no figure in reference §7;
the paper's ablation table reports 4 layers, n=3 below the 2-layer TRM's 87.4% (see the paper
for its figure). CPU-scale result: docs/ablation-cpu.md. 10,045,442 parameters; effective
depth 48.
"""

import os

from trm_jax.config import config_module


def variant(c):
    """Twice the layers, half the latent updates per answer update (at least one)."""
    c.model.L_layers = 2 * c.model.L_layers
    c.model.L_cycles = max(1, c.model.L_cycles // 2)
    return c


def get_config():
    # The training setup of configs/sudoku_mlp.py, then this variant's override.
    base = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sudoku_mlp.py"))
    return variant(base.get_config())
