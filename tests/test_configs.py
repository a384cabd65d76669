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


CONFIG_DIR = CONFIGS[0].parent


def test_hier6_keeps_six_latents_whatever_the_cycles():
    # The reference always carries z_L1..z_L6 (with n = 4, z_L5 and z_L6 stay at their init and
    # still enter every sum: golden trm_hier6_tiny); n must not shrink the carry.
    module = load(CONFIG_DIR / "sudoku_hier6.py")
    c = load(CONFIG_DIR / "sudoku_mlp.py").get_config()
    c.model.L_cycles = 4
    mcfg = config_lib.model_config(module.variant(c), _Meta(*SHAPES["sudoku"]))
    assert mcfg.num_latents == 6
    assert mcfg.latent_names == ("z_H",) + tuple(f"z_L{i}" for i in range(1, 7))
    # A user who asks for another count gets it.
    c = module.get_config()
    c.model.L_cycles = 4
    c.model.num_latents = 4
    assert config_lib.model_config(module.variant(c), _Meta(*SHAPES["sudoku"])).num_latents == 4


def test_arc2_is_arc1_on_the_arc2_data():
    arc1, arc2 = (load(CONFIG_DIR / f"{n}.py") for n in ("arc1_att", "arc2_att"))
    assert "--config=configs/arc2_att.py" in arc2.__doc__
    assert "arc1_att.py" not in arc2.__doc__.split("Train:")[1].split("Evaluate")[0]
    a, b = arc1.get_config().to_dict(), arc2.get_config().to_dict()
    assert b["data"].pop("path") == "data/arc2concept-aug-1000"
    a["data"].pop("path")
    assert a == b
