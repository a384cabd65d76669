"""The paper's Sudoku-Extreme model: TRM with the token-mixing MLP (reference §7).

Data: Sudoku-Extreme 1k train (+ on-the-fly shuffles, the reference bakes 1000 per puzzle),
full test set. With the public CSVs:
    python -m data_gen.sudoku from-csv --csv train.csv --test-csv test.csv \
        --subsample-size 1000 --out data/sudoku-extreme-1k --seed 0
Or generated hard puzzles:
    python -m data_gen.sudoku build --out data/sudoku-extreme-1k --num-train 1000 \
        --num-test 10000 --min-rating 4 --seed 0
Train:
    python -m trm_jax.train --config=configs/sudoku_mlp.py --workdir=runs/sudoku_mlp
Hardware: 1x L40S-class GPU, < 36 h (reference). Expected: 87.4% exact accuracy on
Sudoku-Extreme test (paper); 5,028,866 parameters.
"""

from trm_jax.config import default_config


def get_config():
    c = default_config()
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
    return c
