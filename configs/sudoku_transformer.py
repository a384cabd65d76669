"""The transformer baseline (``transformer``) on Sudoku-Extreme, setup of configs/sudoku_mlp.py.

One pass of an 8-block attention transformer per supervision step (H_layers 8, H_cycles 1, RoPE,
12 heads of 42 at hidden 512: heads need not divide the width), the carried z_H as its only state,
halting on q_halt > q_continue, no Q-continue target (reference §4, transformers_baseline.py).
Data: as configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_transformer.py --workdir=runs/sudoku_transformer
Ablation (scripts/ablate.py variant ``transformer``): see docs/ablation.md.
Hardware: 1x L40S-class GPU (as configs/sudoku_mlp.py). Expected: no figure for this model in
reference §7; CPU-scale result: docs/ablation-cpu.md. 27,144,194 parameters; effective depth 8.
"""

import os

from trm_jax.config import config_module


def variant(c):
    """A deep attention stack, one pass per supervision step; 3/2 the heads (12 at 8), fewer
    where the head width would be odd (RoPE rotates pairs of features)."""
    c.model.arch = "transformer"
    c.model.H_layers = 4 * c.model.L_layers
    c.model.H_cycles = 1
    c.model.L_cycles = 1
    heads = max(1, 3 * c.model.num_heads // 2)
    while heads > 1 and (c.model.hidden_size // heads) % 2:
        heads -= 1
    c.model.num_heads = heads
    c.model.mlp_t = False
    c.model.pos_encodings = "rope"
    return c


def get_config():
    # The training setup of configs/sudoku_mlp.py, then this variant's override.
    base = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sudoku_mlp.py"))
    return variant(base.get_config())
