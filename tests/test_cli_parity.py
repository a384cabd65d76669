"""python -m trm_jax.parity on hostile golden folders: one sentence, exit 2, nothing unpickled."""

import shutil

import numpy as np
import pytest

from tests._cli_checks import one_sentence
from tests.conftest import golden_folders
from trm_jax import parity

FOLDERS = golden_folders()


class NotATensor:
    """A picklable Python object: a weights-only load refuses it."""


@pytest.fixture
def golden_copy(tmp_path):
    if not FOLDERS:
        pytest.skip("no golden folders in the shared directory")
    folder = tmp_path / "golden"
    shutil.copytree(FOLDERS[0], folder)
    return folder


def test_golden_with_object_arrays_is_refused(golden_copy, capsys):
    np.savez(golden_copy / "golden.npz", step0=np.array([{"a": 1}, None], dtype=object))
    assert parity.main([str(golden_copy)]) == 2
    assert "object arrays" in one_sentence(capsys.readouterr().err)


def test_refused_pt_does_not_advise_loading_without_weights_only(golden_copy, capsys):
    torch = pytest.importorskip("torch")
    (golden_copy / "state_dict.npz").unlink(missing_ok=True)
    torch.save({"w": NotATensor()}, golden_copy / "state_dict.pt")
    assert parity.main([str(golden_copy)]) == 2
    err = one_sentence(capsys.readouterr().err)
    assert "refused" in err and "weights-only" in err
    assert "weights_only` set to `False`" not in err and "two options" not in err
