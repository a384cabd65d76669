"""Checkpoints: orbax save / restore / resume, and import of reference PyTorch checkpoints.

A training work dir holds ``config.json`` (the run's full config) and ``checkpoints/<step>/`` with
three items: ``state`` (the whole :class:`~trm_jax.steps.TrainState`: parameters, optimizer
state, EMA, puzzle table, ACT carry, step, RNG), ``data`` (the Grain iterator state) and ``meta``
(model config, dataset shape, metrics). Orbax writes each step into a temporary directory and
renames it when complete, so a crash during a save leaves the previous checkpoint as the latest.
The latest ``keep`` checkpoints are kept, plus the best by the evaluation's headline metric.

Reading a finished run (:func:`locate`, :func:`restore_weights`) needs only the JSON items and
the parameters: :class:`CheckpointInfo` says where a checkpoint is and what model it holds.
Reference PyTorch checkpoints are imported by :mod:`trm_jax.reference_import`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from trm_jax import config as config_lib
from trm_jax import fileio, guards, tasks
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel, init_variables

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
RESTORED = ("step", "params", "ema_params", "constants", "puzzle_table")


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


class DiskFullError(CheckpointError):
    """A checkpoint save that ran out of disk (the previous checkpoint is still the latest)."""


def state_bytes(state: Any) -> int:
    """Bytes of the arrays of ``state`` (about what one checkpoint takes on disk)."""
    return int(sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state)))


def _disk_full(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e)
        if "RESOURCE_EXHAUSTED" in text or "No space left" in text or "ENOSPC" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    data_state: dict | None,
    meta: dict,
    metrics: dict | None = None,
) -> None:
    """Save everything a resumed run needs at ``step``: the whole train state, the data
    iterator's position and the meta (atomic: orbax writes a temporary directory, then renames
    it). A full disk raises :class:`DiskFullError` with one sentence (the earlier checkpoints
    stay; the half-written one is a temporary directory orbax removes)."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state or {}),
        meta=ocp.args.JsonSave(meta),
    )
    m = None if metrics is None else {k: float(v) for k, v in metrics.items()}
    try:
        manager.save(int(step), args=args, metrics=m, force=True)
        manager.wait_until_finished()
    except Exception as e:
        if not _disk_full(e):
            raise
        where = os.fspath(manager.directory)
        try:
            free = guards.size_text(shutil.disk_usage(where).free)
        except OSError:
            free = "an unknown amount"
        raise DiskFullError(
            f"Saving checkpoint {step} in {where} failed: the disk is full (a checkpoint needs "
            f"about {guards.size_text(state_bytes(state))}, {free} is free); free space, lower "
            "checkpoint.keep or use a --workdir on a larger disk, then start again to resume "
            "from the latest complete checkpoint."
        ) from None


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    try:
        restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many kinds; all mean "unreadable"
        raise CheckpointError(_unreadable(manager, step, e)) from None
    if not isinstance(restored["meta"], dict):
        raise CheckpointError(
            f"{manager.directory}/{step}/meta is not a trm_jax checkpoint description."
        )
    return dict(restored["meta"])


def _unreadable(manager, step: int, e: BaseException) -> str:
    return (
        f"Checkpoint {manager.directory}/{step} cannot be restored ({_first_line(e)}); move it "
        "out of the work dir to resume from the checkpoint before it, or train in a new work dir."
    )


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
            raise CheckpointError(_unreadable(manager, step, e)) from None
        raise CheckpointError(
            f"Checkpoint {step} in {manager.directory} holds a train state of a different layout "
            "(written by another trm_jax version), so it cannot be resumed; train in a new work "
            "dir (trm_jax.load still reads its weights)."
        ) from e
    except Exception as e:  # a truncated or damaged checkpoint: orbax / tensorstore errors
        raise CheckpointError(_unreadable(manager, step, e)) from None
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
    # A field added after a checkpoint was written counts as its default there.
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(model_cfg)
        if f.default is not dataclasses.MISSING
    }
    diffs = sorted(
        f"{k}: checkpoint {saved.get(k, defaults.get(k))!r} vs config {ours.get(k)!r}"
        for k in ours
        if k not in free and saved.get(k, defaults.get(k)) != ours.get(k)
    )
    if diffs:
        raise CheckpointError(
            f"{source} was trained with another model config ({'; '.join(diffs)})."
        )


def write_config(workdir: str | os.PathLike, config_json: str) -> None:
    """Write ``config.json`` beside the checkpoints atomically."""
    fileio.write_text(os.path.join(os.fspath(workdir), CONFIG_FILE), config_json)


# --------------------------------------------------------------------------------------------
# Locating a checkpoint (JSON only: no arrays are read)


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """Where a checkpoint lives and what it is, read from its JSON files."""

    workdir: Path
    step: int
    path: Path  # <workdir>/checkpoints/<step>
    meta: dict
    config: Any  # ml_collections.ConfigDict (the defaults if config.json is missing)
    model_config: ModelConfig
    task: str | None
    available_steps: tuple[int, ...]

    @property
    def dataset(self) -> str:
        """The run's dataset directory: the config's path, else the absolute path recorded at
        training time, whichever exists here (else the config's, which may not exist)."""
        return _dataset_of(self.config, self.meta)


def recorded_datasets(config, meta: dict) -> list[str]:
    """The dataset paths a run recorded: its config's ``data.path``, then the absolute path its
    checkpoint meta holds. A path with a ``..`` part is left out: a relative path in a
    ``config.json`` must not lead a reader out of where it was trained (``../../etc``)."""
    out = []
    for c in (str(config.data.get("path") or ""), str(meta.get("dataset") or "")):
        if c and ".." not in Path(c).parts and c not in out:
            out.append(c)
    return out


def _dataset_of(config, meta: dict) -> str:
    candidates = recorded_datasets(config, meta)
    for c in candidates:
        if os.path.isdir(c):
            return c
    return candidates[0] if candidates else ""


@contextlib.contextmanager
def _quiet_absl():
    """Orbax logs warnings (read-only dirs, missing per-item metadata) that mean nothing here."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _steps_in(ckpt_dir: Path) -> list[int]:
    """Finalised orbax steps: integer-named directories (temporary ones carry a suffix)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _first_line(e: BaseException) -> str:
    """The first line of an error, without what would not read as part of a sentence (tensorstore
    appends "See full TensorStore details: <bound method ...>")."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    for cut in ("See full TensorStore details", "<bound method"):
        if cut in line:
            line = line[: line.index(cut)]
    line = line.strip().rstrip(".:;,").strip()
    return line[:200] or type(e).__name__


def _read_meta(step_dir: Path) -> dict:
    meta_dir = step_dir / "meta"
    if not (step_dir / "state").is_dir() or not meta_dir.is_dir():
        raise CheckpointError(
            f"{step_dir} is not a trm_jax checkpoint (it lacks the 'state' and 'meta' items)."
        )
    try:
        with _quiet_absl():
            meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
                meta_dir, args=ocp.args.JsonRestore()
            )
    except Exception as e:  # orbax raises many kinds; all mean "unreadable"
        raise CheckpointError(f"{meta_dir} cannot be read ({_first_line(e)}).") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise CheckpointError(
            f"{step_dir} has no model description in its meta; it was not written by trm_jax."
        )
    return dict(meta)


def _model_config(meta: dict, where: Path) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    kw = {k: v for k, v in meta["model"].items() if k in known}
    try:
        return ModelConfig(**kw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{where} describes a model this code cannot build ({_first_line(e)})."
        ) from None


def task_of(model_config: ModelConfig, dataset: str | None = None) -> str | None:
    """The puzzle kind of a model: the dataset's ``task`` if readable, else its token shapes."""
    if dataset:
        try:
            from trm_jax.data import dataset as ds

            task = ds.load_split(dataset, "train").task
        except (ValueError, OSError):
            task = None
        if task in tasks.NAMES:
            return task
    record = tasks.of_shape(model_config.vocab_size, model_config.seq_len)
    return record.name if record else None


def locate(path: str | os.PathLike, step: int | None = None) -> CheckpointInfo:
    """Find a checkpoint: a work dir (its latest step, or ``step``) or a ``checkpoints/<N>`` dir.

    Reads only JSON (meta and config.json). Raises CheckpointError with one sentence.
    """
    p = Path(os.fspath(path)).expanduser().absolute()
    if not p.exists():
        raise CheckpointError(
            f"{p} does not exist; expected a trm_jax work dir or a .../checkpoints/<step> "
            "directory."
        )
    if (p / CHECKPOINT_DIR).is_dir() or (p / CONFIG_FILE).is_file():
        workdir = p
        steps = _steps_in(p / CHECKPOINT_DIR)
        if not steps:
            raise CheckpointError(f"{p} has no checkpoints (nothing in {p / CHECKPOINT_DIR}).")
        if step is None:
            step = steps[-1]
        elif int(step) not in steps:
            raise CheckpointError(
                f"{p} has no checkpoint for step {step}; it has steps {', '.join(map(str, steps))}."
            )
        step_dir = p / CHECKPOINT_DIR / str(step)
    elif p.name.isdigit() and p.is_dir():
        workdir = p.parent.parent
        steps = _steps_in(p.parent)
        if step is not None and int(step) != int(p.name):
            raise CheckpointError(f"{p} is the checkpoint of step {p.name}, not of step {step}.")
        step = int(p.name)
        step_dir = p
    else:
        raise CheckpointError(
            f"{p} is neither a trm_jax work dir (no {CHECKPOINT_DIR}/ inside) nor a "
            f"checkpoint directory (.../{CHECKPOINT_DIR}/<step>)."
        )
    meta = _read_meta(step_dir)
    mcfg = _model_config(meta, step_dir)
    try:
        config = config_lib.from_json((workdir / CONFIG_FILE).read_text(), workdir / CONFIG_FILE)
    except config_lib.ConfigError as e:
        raise CheckpointError(str(e)) from None
    except FileNotFoundError:
        warnings.warn(
            f"{workdir} has no {CONFIG_FILE}; using the default config (raw weights, "
            "unknown dataset).",
            stacklevel=2,
        )
        config = config_lib.default_config()
        config.data.path = str(meta.get("dataset") or "")
    except ValueError as e:
        raise CheckpointError(
            f"{workdir / CONFIG_FILE} is not valid JSON ({_first_line(e)})."
        ) from None
    dataset = _dataset_of(config, meta)
    return CheckpointInfo(
        workdir=workdir,
        step=int(step),
        path=step_dir,
        meta=meta,
        config=config,
        model_config=mcfg,
        task=task_of(mcfg, dataset),
        available_steps=tuple(steps),
    )


# --------------------------------------------------------------------------------------------
# Restoring weights


def restore_weights(info: CheckpointInfo, model: TRMModel) -> dict:
    """Partial orbax restore of the parameters, EMA, constants, puzzle table and step."""
    state_dir = info.path / "state"
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        with _quiet_absl():
            stored = checkpointer.metadata(state_dir).item_metadata.tree
    except Exception as e:
        raise CheckpointError(f"{state_dir} cannot be read ({_first_line(e)}).") from None
    missing = [k for k in RESTORED if k not in stored]
    if missing:
        raise CheckpointError(f"{state_dir} lacks {', '.join(missing)}; not a trm_jax train state.")

    expected = jax.eval_shape(lambda k: init_variables(model, k), jax.random.key(0))
    want_shapes = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), expected)
    for name, key in (("params", "params"), ("ema_params", "params"), ("constants", "constants")):
        have = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), stored[name])
        if have != want_shapes[key]:
            raise CheckpointError(
                f"{info.path} holds {name} of other shapes than its model config describes "
                "(the meta and the state disagree)."
            )
    table = stored["puzzle_table"]
    target = {
        "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=device),
        "params": expected["params"],
        "ema_params": expected["params"],
        "constants": expected["constants"],
        "puzzle_table": jax.ShapeDtypeStruct(tuple(table.shape), table.dtype, sharding=device),
    }
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), target)
    restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=device), target)
    try:
        with _quiet_absl():
            return checkpointer.restore(
                state_dir,
                args=ocp.args.PyTreeRestore(
                    item=target, restore_args=restore_args, partial_restore=True
                ),
            )
    except Exception as e:
        raise CheckpointError(f"{state_dir} cannot be restored ({_first_line(e)}).") from None
