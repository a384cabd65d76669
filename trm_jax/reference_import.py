"""Import of official PyTorch TRM/HRM checkpoints (state dicts) into our variables.

The official ``pretrain.py`` saves ``torch.compile(model).state_dict()``: keys look like
``_orig_mod.model.inner.L_level.layers.0.self_attn.qkv_proj.weight`` with PyTorch's Linear
layout ``[out, in]``. A checkpoint file is untrusted input: ``.pt`` files are read with
``torch.load(weights_only=True)`` (no pickle code runs), ``.npz`` with ``allow_pickle=False``.
Missing, extra or misshapen keys are refused with a message naming them.
"""

from __future__ import annotations

import os
import zipfile

import jax
import numpy as np

from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel, init_variables

_INNER = "model.inner."


class CheckpointImportError(ValueError):
    """A reference checkpoint that cannot be read into the configured model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a reference state dict from ``.pt`` (torch, weights only) or ``.npz`` as numpy."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointImportError(f"Checkpoint file {path} does not exist.")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: np.asarray(data[k]) for k in data.files}
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise CheckpointImportError(f"{path} is not a readable .npz state dict ({e}).") from e
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise CheckpointImportError(
            f"Reading {path} needs PyTorch (pip install -e '.[torch]'), or convert it to .npz."
        ) from e
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or unsafe files
        if "Weights only load failed" in str(e):
            # torch's own message suggests loading without weights_only, which runs code from
            # the file: not advice to pass on for an untrusted checkpoint.
            raise CheckpointImportError(
                f"{path} is refused: the weights-only load found Python objects besides "
                "tensors, which only unpickling (running code from the file) could load; "
                "export its tensors (or an .npz) from a trusted copy."
            ) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointImportError(
            f"{path} is not a weights-only PyTorch state dict ({first})."
        ) from None
    if not isinstance(sd, dict):
        raise CheckpointImportError(f"{path} holds a {type(sd).__name__}, not a state dict.")
    out = {}
    for k, v in sd.items():
        if not hasattr(v, "detach"):
            raise CheckpointImportError(f"{path}: entry {k!r} is not a tensor.")
        out[k] = v.detach().to(torch.float32).cpu().numpy()
    return out


def _strip(key: str) -> str:
    i = key.find(_INNER)
    return key[i + len(_INNER) :] if i >= 0 else key


def _torch_name(path: tuple[str, ...]) -> tuple[str, bool]:
    """Our parameter path -> (reference key without prefix, whether to transpose)."""
    parts = []
    for p in path:
        if p.startswith("layers_"):
            parts += ["layers", p[len("layers_") :]]
        else:
            parts.append(p)
    leaf = parts[-1]
    if leaf == "kernel":
        return ".".join(parts[:-1] + ["weight"]), True
    if leaf == "embedding":
        return ".".join(parts[:-1] + ["embedding_weight"]), False
    return ".".join(parts), False


def expected_layout(cfg: ModelConfig) -> dict[str, tuple[str, tuple[str, ...], bool, tuple]]:
    """reference key -> (collection, our path, transpose, reference shape)."""
    model = TRMModel(cfg)
    shapes = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    layout = {}
    for coll in ("params", "constants"):
        flat = jax.tree_util.tree_flatten_with_path(shapes[coll])[0]
        for kp, leaf in flat:
            path = tuple(k.key for k in kp)
            name, transpose = _torch_name(path)
            shape = tuple(reversed(leaf.shape)) if transpose else tuple(leaf.shape)
            layout[name] = (coll, path, transpose, shape)
    if cfg.puzzle_len:
        layout["puzzle_emb.weights"] = (
            "puzzle_table",
            (),
            False,
            (cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim),
        )
    return layout


def import_state_dict(cfg: ModelConfig, state_dict: dict[str, np.ndarray], source: str = "state"):
    """Map a reference state dict onto (variables, puzzle_table) for ``cfg``.

    Returns ``({'params': ..., 'constants': ...}, puzzle_table or None)`` as float32 numpy trees.
    """
    layout = expected_layout(cfg)
    given = {_strip(k): np.asarray(v) for k, v in state_dict.items()}
    missing = sorted(set(layout) - set(given))
    extra = sorted(set(given) - set(layout))
    wrong = sorted(
        f"{k} {tuple(given[k].shape)} (expected {layout[k][3]})"
        for k in set(layout) & set(given)
        if tuple(given[k].shape) != layout[k][3]
    )
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if extra:
        problems.append("unexpected keys: " + ", ".join(extra))
    if wrong:
        problems.append("misshapen: " + ", ".join(wrong))
    if problems:
        raise CheckpointImportError(
            f"{source} does not fit this model config ({'; '.join(problems)})."
        )
    variables: dict = {"params": {}, "constants": {}}
    table = None
    for name, (coll, path, transpose, _) in layout.items():
        value = given[name].astype(np.float32)
        if transpose:
            value = value.T
        if coll == "puzzle_table":
            table = value
            continue
        node = variables[coll]
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = np.ascontiguousarray(value)
    return variables, table


def export_state_dict(cfg: ModelConfig, variables, puzzle_table=None) -> dict[str, np.ndarray]:
    """Our variables -> a reference-layout state dict (keys with the ``_orig_mod`` prefix)."""
    out = {}
    for name, (coll, path, transpose, _) in expected_layout(cfg).items():
        if coll == "puzzle_table":
            value = np.asarray(puzzle_table)
        else:
            node = variables[coll]
            for p in path:
                node = node[p]
            value = np.asarray(node)
            if transpose:
                value = value.T
        out["_orig_mod." + _INNER + name] = np.ascontiguousarray(value, dtype=np.float32)
    return out
