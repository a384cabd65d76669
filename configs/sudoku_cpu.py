"""The CPU main job: a small token-MLP TRM on generated Sudoku, 15 minutes on 2 cores.

Command (README):
    python -m data_gen.sudoku build --out data/sudoku-cpu --num-train 1000 --num-test 500 \
        --givens 45 --seed 0
    python -m trm_jax.train --config=configs/sudoku_cpu.py --workdir=runs/sudoku-cpu

Hardware: 2 CPU cores. Expected: see README ("The CPU main job") for measured accuracy.
"""

from trm_jax.config import default_config


def get_config():
    c = default_config()
    c.data.path = "data/sudoku-cpu"
    c.data.global_batch_size = 64
    c.data.eval_global_batch_size = 256

    c.model.mlp_t = True
    c.model.pos_encodings = "none"
    c.model.hidden_size = 128
    c.model.num_heads = 4
    c.model.puzzle_emb_ndim = 128
    c.model.H_cycles = 3
    c.model.L_cycles = 6

    c.train.epochs = 60
    c.train.eval_interval = 20
    c.train.lr = 3e-3
    c.train.lr_warmup_steps = 100
    c.train.puzzle_emb_lr = 3e-3
    c.train.weight_decay = 1.0
    c.train.puzzle_emb_weight_decay = 1.0
    # EMA 0.999 lags ~1000 steps behind: too slow for a run this short (see README).
    c.train.ema = False
    # 13 minutes of training, then the final evaluation: the command ends within 15 minutes.
    c.train.time_budget_s = 780.0
    c.train.log_every = 10
    c.checkpoint.every_steps = 100
    return c
