"""Checkpoints: orbax save / restore / resume, and import of reference PyTorch checkpoints.

A training work dir holds ``config.json`` (the run's full config) and ``checkpoints/<step>/`` with
three items: ``state`` (the whole :class:`~trm_jax.steps.TrainState`: parameters, optimizer
state, EMA, puzzle table, ACT carry, step, RNG), ``data`` (the Grain iterator state) and ``meta``
(model config, dataset shape, metrics). Orbax writes each step into a temporary directory and
renames it when complete, so a crash during a save leaves the previous checkpoint as the latest.
The latest ``keep`` checkpoints are kept, plus the best by the evaluation's headline metric.

Reference checkpoints (``.pt`` / ``.npz`` state dicts) are imported by
:func:`import_state_dict`, re-exported here from :mod:`trm_jax.reference_import`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from trm_jax.reference_import import (  # noqa: F401  (public re-exports)
    CheckpointImportError,
    export_state_dict,
    import_state_dict,
    read_state_dict,
)

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or from another model or config."""


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    return os.path.join(os.path.abspath(os.fspath(workdir)), CHECKPOINT_DIR)


def make_manager(
    workdir: str | os.PathLike, keep: int = 3, keep_best: bool = True, read_only: bool = False
) -> ocp.CheckpointManager:
    """The run's CheckpointManager: latest ``keep`` plus the best by the evaluation's headline
    (ARC pass@2, otherwise exact accuracy)."""
    policies = [pp.LatestN(n=max(1, int(keep)))]
    if keep_best:
        policies.append(
            pp.BestN(
                # "headline": ARC pass@2 or exact accuracy (trm_jax.train); older runs saved
                # only exact_accuracy.
                get_metric_fn=lambda m: float(m.get("headline", m["exact_accuracy"])),
                n=1,
                keep_checkpoints_without_metrics=False,
            )
        )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=False,
        cleanup_tmp_directories=not read_only,
        create=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir), options=options, item_names=("state", "data", "meta")
    )


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    data_state: dict | None,
    meta: dict,
    metrics: dict | None = None,
) -> None:
    """Save everything a resumed run needs at ``step`` (atomic: temp dir, then rename)."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state or {}),
        meta=ocp.args.JsonSave(meta),
    )
    m = None if metrics is None else {k: float(v) for k, v in metrics.items()}
    manager.save(int(step), args=args, metrics=m, force=True)
    manager.wait_until_finished()


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any):
    """Restore (state, data_state, meta) at ``step`` into the shapes/shardings of the target."""
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ),
        )
    except ValueError as e:
        if "tree structures do not match" not in str(e):
            raise
        raise CheckpointError(
            f"Checkpoint {step} in {manager.directory} holds a train state of a different layout "
            "(written by another trm_jax version), so it cannot be resumed; train in a new work "
            "dir (trm_jax.load still reads its weights)."
        ) from e
    return restored["state"], dict(restored["data"] or {}), dict(restored["meta"])


def abstract_like(state: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs (with shardings) describing ``state`` for a restore target."""
    if shardings is None:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
            state,
        )
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )


def model_signature(model_cfg) -> dict:
    """The fields of a model config that decide parameter shapes and semantics."""
    return dataclasses.asdict(model_cfg)


def check_compatible(meta: dict, model_cfg, source: str) -> None:
    """Refuse a checkpoint whose model config differs from the one requested."""
    saved = meta.get("model")
    if saved is None:
        raise CheckpointError(f"{source} has no model description; it was not written by trm_jax.")
    ours = model_signature(model_cfg)
    # Settings that change neither shapes nor results of a restored state may differ.
    free = {"remat", "scan_unroll", "halt_exploration_prob"}
    diffs = sorted(
        f"{k}: checkpoint {saved.get(k)!r} vs config {ours.get(k)!r}"
        for k in ours
        if k not in free and saved.get(k) != ours.get(k)
    )
    if diffs:
        raise CheckpointError(
            f"{source} was trained with another model config ({'; '.join(diffs)})."
        )


def write_config(workdir: str | os.PathLike, config_json: str) -> None:
    """Write ``config.json`` beside the checkpoints atomically."""
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config_json)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_config(workdir: str | os.PathLike) -> dict:
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"{workdir} has no {CONFIG_FILE}; is it a trm_jax work dir?")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}).") from e
