"""The paper's ARC-AGI-1 model: TRM with attention and RoPE, n = 4 (reference §7).

Data (ARC-AGI-1 training + evaluation demonstrations + ConceptARC, evaluation queries held out):
    python -m data_gen.arc build --out data/arc1concept-aug-1000 \
        --subsets training evaluation concept --test-set evaluation --num-aug 1000 --seed 42
Train:
    python -m trm_jax.train --config=configs/arc1_att.py --workdir=runs/arc1
Evaluate (pass@2 is the headline):
    python -m trm_jax.evaluate --workdir=runs/arc1
Hardware: 4x H100, ~3 days (reference). Expected: ARC-AGI-1 pass@2 44.6% (paper; the
reference's number pools votes over its 10 evaluation rounds); 6,829,058 parameters plus a
~0.88M x 512 puzzle-embedding table, sharded by rows over the devices.
"""

from trm_jax.config import default_config


def get_config():
    c = default_config()
    c.data.path = "data/arc1concept-aug-1000"
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
