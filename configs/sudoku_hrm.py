"""HRM (the paper's baseline) on Sudoku-Extreme, with the training setup of configs/sudoku_mlp.py.

Two networks of 4 post-norm attention blocks each (``H_level``, ``L_level``), T = H_cycles 2,
n = L_cycles 2, RoPE, the one-step gradient and the Q-continue target (reference §4,
config/arch/hrm.yaml). Data: as configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_hrm.py --workdir=runs/sudoku_hrm
Ablation (scripts/ablate.py variant ``hrm``):
    python scripts/ablate.py --variants hrm --data data/sudoku-extreme-1k --hidden 512 \
        --heads 8 --cycles 3,6 --batch 768 --lr 1e-4 --warmup-steps 2000 --ema \
        --budget-steps 65104 --eval-examples 0
Hardware: 1x L40S-class GPU (reference). Expected: 55.0% exact accuracy on Sudoku-Extreme test
(HRM as reported in the TRM paper, reference §7); 27,275,266 parameters; effective depth 24 blocks
per supervision step.
"""

import os

from trm_jax.config import config_module


def variant(c):
    """HRM relative to a TRM config: twice its layers per net, T, n at most 2, attention."""
    c.model.arch = "hrm"
    c.model.H_layers = 2 * c.model.L_layers
    c.model.L_layers = 2 * c.model.L_layers
    c.model.H_cycles = min(2, c.model.H_cycles)
    c.model.L_cycles = min(2, c.model.L_cycles)
    c.model.mlp_t = False
    c.model.pos_encodings = "rope"
    return c


def get_config():
    # The training setup of configs/sudoku_mlp.py, then this variant's override.
    base = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sudoku_mlp.py"))
    return variant(base.get_config())
