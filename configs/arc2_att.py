"""The paper's ARC-AGI-2 model: TRM with attention and RoPE, n = 4 (reference §7).

Data (ARC-AGI-2 training2 + evaluation2 demonstrations + ConceptARC, evaluation2 queries held out):
    python -m data_gen.arc build --out data/arc2concept-aug-1000 \
        --subsets training2 evaluation2 concept --test-set evaluation2 --num-aug 1000 --seed 42
Train:
    python -m trm_jax.train --config=configs/arc2_att.py --workdir=runs/arc2
Evaluate (pass@2 is the headline):
    python -m trm_jax.evaluate --workdir=runs/arc2
Hardware: 4x H100, ~3 days (reference). Expected: ARC-AGI-2 pass@2 7.8% (paper; the
reference's number pools votes over its 10 evaluation rounds); 6,829,058 parameters plus a
~0.88M x 512 puzzle-embedding table, sharded by rows over the devices.
"""

import os

from trm_jax.config import config_module


def get_config():
    # The model and training setup of configs/arc1_att.py on the ARC-AGI-2 data.
    base = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "arc1_att.py"))
    c = base.get_config()
    c.data.path = "data/arc2concept-aug-1000"
    return c
