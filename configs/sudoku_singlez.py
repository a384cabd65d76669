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

from trm_jax.config import default_config


def variant(c):
    """One latent instead of (y, z); everything else unchanged."""
    c.model.arch = "trm_singlez"
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
