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

from trm_jax.config import default_config


def variant(c):
    """One z_L per L step (n + 1 latents in all)."""
    c.model.arch = "trm_hier6"
    c.model.num_latents = max(1, c.model.L_cycles)
    return c


def get_config():
    c = default_config()
    # The training setup of configs/sudoku_mlp.py.
    c.data.path = "data/sudoku-extreme-1k"
    c.model.mlp_t = True
    c.model.pos_encodings = "none"
    c.model.H_cycles = 3
    c.model.L_cycles = 6
    c.train.epochs = 50000
    c.train.eval_interval = 5000
    c.train.lr = 1e-4
    c.train.puzzle_emb_lr = 1e-4
    c.train.weight_decay = 1.0
    c.train.puzzle_emb_weight_decay = 1.0
    c.train.ema = True
    return variant(c)
