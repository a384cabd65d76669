"""The paper's Sudoku-Extreme model with self-attention and RoPE (reference §7).

Data: as configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_att.py --workdir=runs/sudoku_att
Hardware: 1x L40S-class GPU (reference). Expected: 74.7% exact accuracy on Sudoku-Extreme
test (paper); 6,828,034 parameters.
"""

from trm_jax.config import default_config


def get_config():
    c = default_config()
    c.data.path = "data/sudoku-extreme-1k"
    c.model.pos_encodings = "rope"
    c.model.H_cycles = 3
    c.model.L_cycles = 6
    c.train.epochs = 50000
    c.train.eval_interval = 5000
    c.train.lr = 1e-4
    c.train.puzzle_emb_lr = 1e-4
    c.train.weight_decay = 1.0
    c.train.puzzle_emb_weight_decay = 1.0
    c.train.ema = True
    return c
