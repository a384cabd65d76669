"""Every config file loads, validates, and builds the model its docstring promises."""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from trm_jax import config as config_lib
from trm_jax.model.trm import TRMModel, init_variables

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py"))

# Data shapes of the paper's datasets (reference §1): vocab, seq_len, puzzle ids.
SHAPES = {"sudoku": (11, 81, 1), "maze": (6, 900, 1), "arc": (12, 900, 1000)}
EXPECTED_PARAMS = {
    "sudoku_mlp": 5_028_866,
    "sudoku_att": 6_828_034,
    "maze_att": 6_822_914,
    "arc1_att": 6_829_058,
    "arc2_att": 6_829_058,
}


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Meta:
    def __init__(self, vocab, seq_len, ids):
        self.vocab_size, self.seq_len, self.num_puzzle_identifiers = vocab, seq_len, ids


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds(path):
    module = load(path)
    assert module.__doc__ and "python -m trm_jax.train" in module.__doc__, "document the command"
    c = module.get_config()
    config_lib.train_config(c)
    kind = next((k for k in SHAPES if path.stem.startswith(k)), "sudoku")
    mcfg = config_lib.model_config(c, _Meta(*SHAPES[kind]))
    shapes = jax.eval_shape(lambda: init_variables(TRMModel(mcfg), jax.random.key(0)))
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    if path.stem in EXPECTED_PARAMS:
        assert n == EXPECTED_PARAMS[path.stem]
