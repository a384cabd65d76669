"""The paper's Maze-Hard model: TRM with attention and RoPE, n = 4 (reference §7).

Data (the reference trains on 1000 un-augmented mazes; add --aug for 8 dihedral versions):
    python -m data_gen.maze build --out data/maze-30x30-hard-1k --num-train 1000 \
        --num-test 1000 --seed 0
or from the public Maze-Hard CSVs with `python -m data_gen.maze from-csv`.
Train:
    python -m trm_jax.train --config=configs/maze_att.py --workdir=runs/maze_att
Hardware: 4x L40S-class GPUs, < 24 h (reference). Expected: 85.3% exact accuracy on
Maze-Hard (paper); 6,822,914 parameters.
"""

from trm_jax.config import default_config


def get_config():
    c = default_config()
    c.data.path = "data/maze-30x30-hard-1k"
    c.model.pos_encodings = "rope"
    c.model.H_cycles = 3
    c.model.L_cycles = 4
    c.train.epochs = 50000
    c.train.eval_interval = 5000
    c.train.lr = 1e-4
    c.train.puzzle_emb_lr = 1e-4
    c.train.weight_decay = 1.0
    c.train.puzzle_emb_weight_decay = 1.0
    c.train.ema = True
    return c
