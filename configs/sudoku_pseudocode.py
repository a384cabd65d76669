"""TRM trained as the paper's pseudocode shows: N_sup updates on each batch, carry detached.

``train.deep_supervision = "pseudocode"`` (trm_jax/steps.py ``train_step_pseudocode``): each
batch of fresh puzzles gets up to halt_max_steps (16) optimizer steps, stopping early once every
row has halted, instead of the reference's one update per batch with the carry kept across
batches. A training "step" of trm_jax.train is then one batch (up to 16 updates), so epochs mean
16x the optimizer steps of configs/sudoku_mlp.py. Data: as configs/sudoku_mlp.py.
Train:
    python -m trm_jax.train --config=configs/sudoku_pseudocode.py --workdir=runs/sudoku_pseudocode
Ablation (scripts/ablate.py variant ``pseudocode-act``): see docs/ablation.md.
Hardware: 1x L40S-class GPU (as configs/sudoku_mlp.py). Expected: the paper states its 87.4%
(reference §7) for TRM as its pseudocode describes it; the reference code trains in the "carry"
form of configs/sudoku_mlp.py. 5,028,866 parameters; effective depth 42.
"""

import os

from trm_jax.config import config_module


def variant(c):
    """The paper-pseudocode deep supervision; the model is unchanged."""
    c.train.deep_supervision = "pseudocode"
    return c


def get_config():
    # The training setup of configs/sudoku_mlp.py, then this variant's override.
    base = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sudoku_mlp.py"))
    return variant(base.get_config())
