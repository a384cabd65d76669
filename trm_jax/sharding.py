"""Device mesh, the sharding of each kind of array, and multi-host start-up.

One ``data`` axis by default, sized to all devices. Batches and the ACT carry are split along
the batch axis; parameters, optimizer and EMA state are replicated; the puzzle-embedding table is
split along its rows (the ARC table is ~0.9M x 512), padded to a multiple of the axis size.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = "data"


class MeshError(ValueError):
    """A mesh that cannot be built on the devices present."""


def maybe_initialize_distributed(cfg) -> None:
    """Start multi-host JAX when the config or the environment asks for it.

    Triggers: ``distributed.enabled``, a ``distributed.coordinator_address``, or the standard
    environment variables (``JAX_COORDINATOR_ADDRESS``; on TPU pods and SLURM
    ``jax.distributed.initialize()`` discovers everything itself).
    """
    d = cfg.distributed
    env = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not (d.enabled or d.coordinator_address or env):
        return
    kwargs = {}
    if d.coordinator_address:
        kwargs["coordinator_address"] = d.coordinator_address
    if d.num_processes > 0:
        kwargs["num_processes"] = int(d.num_processes)
    if d.process_id >= 0:
        kwargs["process_id"] = int(d.process_id)
    # Cross-process collectives of the CPU backend go through gloo (no effect on GPU/TPU).
    # Set before initialize: querying the backend first would start it too early.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)


def make_mesh(data: int = -1) -> Mesh:
    """A 1-D mesh over ``data`` devices (-1: all)."""
    devices = jax.devices()
    n = len(devices) if data in (-1, 0) else int(data)
    if n < 1 or n > len(devices) or len(devices) % n:
        raise MeshError(
            f"mesh.data={data} does not fit the {len(devices)} available device(s); "
            f"use -1 or a divisor of {len(devices)}."
        )
    return Mesh(np.asarray(devices[:n]).reshape(n), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def table_sharding(mesh: Mesh) -> NamedSharding:
    """Puzzle-table rows split over ``data``."""
    return NamedSharding(mesh, PartitionSpec(DATA, None))


def padded_rows(num_rows: int, mesh: Mesh) -> int:
    """Row count of the puzzle table rounded up to a multiple of the data axis."""
    n = mesh.shape[DATA]
    return -(-num_rows // n) * n


def check_batch(global_batch_size: int, mesh: Mesh) -> None:
    n = mesh.shape[DATA]
    procs = jax.process_count()
    if global_batch_size % n or global_batch_size % procs:
        raise MeshError(
            f"The global batch of {global_batch_size} does not split evenly over {n} device(s) "
            f"and {procs} process(es)."
        )


def global_batch(local: dict, mesh: Mesh) -> dict:
    """This process's rows -> global arrays sharded along the batch axis."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }


def state_shardings(abstract, mesh: Mesh):
    """Shardings of a train state (``trm_jax.steps.TrainState``, concrete or abstract): the
    batch-shaped leaves (the ACT carry) split on ``data``, the puzzle table split by rows,
    everything else replicated."""
    rep = replicated(mesh)
    sh = jax.tree.map(lambda _: rep, abstract)
    carry = jax.tree.map(lambda _: batch_sharding(mesh), abstract.carry)
    return sh.replace(carry=carry, puzzle_table=table_sharding(mesh))
