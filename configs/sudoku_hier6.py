"""TRM with multi-scale latents (``trm_hier6``) on Sudoku-Extreme: the paper's "multi-z" ablation.

z_H plus n low-level latents z_L1..z_Ln (n = L_cycles = 6, as the reference hard-codes); L step
i updates z_Li from the sum of all of them, the H step reads that sum (reference §4). Otherwise
configs/sudoku_mlp.py. Data: as configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_hier6.py --workdir=runs/sudoku_hier6
Ablation (scripts/ablate.py variant ``multi-z``): see docs/ablation.md.
Hardware: 1x L40S-class GPU, < 36 h (as configs/sudoku_mlp.py). Expected: no figure in reference
§7; the paper's z-ablation table reports multi-scale z below TRM's 87.4% (see the paper for its
figure). CPU-scale result: docs/ablation-cpu.md. 5,028,866 parameters; effective depth 42 blocks
per supervision step.
"""

import os

from trm_jax.config import config_module


def variant(c):
    """One z_L per L step (n + 1 latents in all)."""
    c.model.arch = "trm_hier6"
    c.model.num_latents = max(1, c.model.L_cycles)
    return c


def get_config():
    # The training setup of configs/sudoku_mlp.py, then this variant's override.
    base = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sudoku_mlp.py"))
    return variant(base.get_config())
