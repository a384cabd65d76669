"""Parity with the official PyTorch implementation, on every shared golden folder."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import GOLDEN, REPO, golden_folders
from trm_jax import parity
from trm_jax.reference_import import CheckpointImportError, read_state_dict

FOLDERS = golden_folders()


def test_golden_folders_present():
    assert len(FOLDERS) >= 6, f"expected the shared golden folders under {GOLDEN}"


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_parity_within_stated_tolerances(folder):
    rows, cfg = parity.run_parity(str(folder))
    bad = [r for r in rows if not r.ok]
    assert not bad, parity.format_table(str(folder), bad)
    # Every recorded step and every gradient was actually compared.
    with np.load(folder / "golden.npz") as g:
        n_grads = sum(1 for k in g.files if "/grad/" in k)
    assert (
        sum(
            r.quantity.startswith("grad/") and r.quantity != "grad/puzzle_emb_local_weights"
            for r in rows
        )
        == n_grads
    )
    assert any(r.record.startswith("eval/step") for r in rows)


def test_parity_command_exit_codes(tmp_path):
    folder = GOLDEN / "trm_att_rope_tiny"
    if not folder.exists():
        pytest.skip("golden folder missing")
    ok = subprocess.run(
        [sys.executable, "-m", "trm_jax.parity", "--quiet", str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 failed" in ok.stdout

    # A perturbed weight must be caught (exit 1), not waved through.
    bad = tmp_path / "perturbed"
    shutil.copytree(folder, bad)
    sd = dict(np.load(bad / "state_dict.npz"))
    key = "_orig_mod.model.inner.L_level.layers.1.mlp.down_proj.weight"
    sd[key] = sd[key] * 1.001
    (bad / "state_dict.pt").unlink()
    np.savez(bad / "state_dict.npz", **sd)
    res = subprocess.run(
        [sys.executable, "-m", "trm_jax.parity", "--quiet", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1, res.stdout
    assert "FAIL" in res.stdout

    # A folder that is not a golden folder: one sentence, exit 2.
    res = subprocess.run(
        [sys.executable, "-m", "trm_jax.parity", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and "Traceback" not in res.stderr


def test_pt_and_npz_state_dicts_agree():
    pytest.importorskip("torch")
    folder = GOLDEN / "trm_mlp_t_tiny"
    a = read_state_dict(folder / "state_dict.pt")
    b = read_state_dict(folder / "state_dict.npz")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_pt_loading_never_runs_pickled_code(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointImportError, match="weights-only"):
        read_state_dict(path)
    assert not marker.exists()


def test_config_from_reference_handles_other_layouts():
    cfg = parity.config_from_reference(
        "models.recursive_reasoning.trm.TinyRecursiveReasoningModel_ACTV1",
        {
            "seq_len": 900,
            "vocab_size": 6,
            "puzzle_emb_ndim": 96,
            "puzzle_emb_len": 0,
            "hidden_size": 64,
            "num_heads": 4,
            "pos_encodings": "learned",
            "H_cycles": 2,
            "L_cycles": 2,
            "L_layers": 1,
            "H_layers": 0,
            "expansion": 2,
            "halt_max_steps": 2,
            "forward_dtype": "float32",
            "batch_size": 2,
            "num_puzzle_identifiers": 5,
        },
    )
    assert cfg.puzzle_len == 2 and cfg.total_len == 902 and cfg.vocab_size == 6
    assert json.dumps(cfg.__dict__)
