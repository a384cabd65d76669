"""Shared test fixtures: paths to the shared golden folders and data."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("TRM_SHARED_DIR", REPO.parent / "shared"))
GOLDEN = SHARED / "golden"


def golden_folders():
    if not GOLDEN.is_dir():
        return []
    return sorted(p for p in GOLDEN.iterdir() if (p / "golden.npz").exists())


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"shared directory {SHARED} not present")
    return SHARED
