"""The paper's ARC-AGI-2 model: TRM with attention and RoPE, n = 4 (reference §7).

Data (ARC-AGI-2 training2 + evaluation2 demonstrations + ConceptARC, evaluation2 queries held out):
    python -m data_gen.arc build --out data/arc2concept-aug-1000 \
        --subsets training2 evaluation2 concept --test-set evaluation2 --num-aug 1000 --seed 42
Train:
    python -m trm_jax.train --config=configs/arc1_att.py --workdir=runs/arc2
Evaluate (pass@2 is the headline):
    python -m trm_jax.evaluate --workdir=runs/arc2
Hardware: 4x H100, ~3 days (reference). Expected: ARC-AGI-2 pass@2 7.8% (paper; the
reference's number pools votes over its 10 evaluation rounds); 6,829,058 parameters plus a
~0.88M x 512 puzzle-embedding table, sharded by rows over the devices.
"""

from trm_jax.config import default_config


def get_config():
    c = default_config()
    c.data.path = "data/arc2concept-aug-1000"
    c.model.pos_encodings = "rope"
    c.model.H_cycles = 3
    c.model.L_cycles = 4
    c.train.epochs = 100000
    c.train.eval_interval = 10000
    c.train.lr = 1e-4
    c.train.puzzle_emb_lr = 1e-2
    c.train.weight_decay = 0.1
    c.train.puzzle_emb_weight_decay = 0.1
    c.train.ema = True
    return c
