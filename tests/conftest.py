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


@pytest.fixture(scope="session", autouse=True)
def _shared_compilation_cache(tmp_path_factory):
    """Child processes (the CLI and training-driver tests start many) share one JAX persistent
    compilation cache, so a program they all run compiles once per session. Set after the test
    modules imported JAX, so this process keeps compiling in memory as before; a cache hit loads
    the same executable, so the numbers do not change."""
    keys = {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: v for k, v in keys.items() if before[k] is None})
    yield
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
