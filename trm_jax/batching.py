"""Many puzzles at test time: a plain loop over fixed batches, or continuous batching.

:func:`solve_many` answers a whole dataset under one :class:`~trm_jax.test_time.InferenceSettings`
and returns :class:`Solutions` (every rule's answers, each trajectory's answers for ARC voting,
the ``verify`` answers apart, and the cost: wall time, net applications per puzzle). The plain
loop runs fixed chunks through :func:`trm_jax.rollout.rollout_batch`; continuous batching keeps
one batch of slots in which a finished puzzle's slot takes the next puzzle (its carry reset, as
the reference's training carry does), so with ``first_halt`` no slot waits for the slowest puzzle
of its batch. The answers are the same either way (the noise is keyed by the puzzle's index).

Shape letters: K samples, B slots, P puzzles, L seq_len.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from trm_jax import test_time as tt
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel
from trm_jax.rollout import _body, _finish, _init_state, _State, rollout_batch

__all__ = ["Solutions", "net_applications_per_step", "solve_many"]


# --------------------------------------------------------------------------------------------
# Continuous batching: refill finished slots, advance until some slot finishes


def _refill(model, K, variables, state: _State, take_B, inputs, ids, index) -> _State:
    """Slots in ``take``: a fresh puzzle (init latents, step 0, fresh tracking). Finished slots
    that take nothing go idle."""
    fresh = _init_state(model, variables, K, inputs, ids, index, jnp.ones_like(take_B))

    def put(mask_B, new, old):
        if new.ndim == 0:
            return old
        rows = new.shape[0] // mask_B.shape[0]
        m = jnp.tile(mask_B, rows) if rows > 1 else mask_B
        return jnp.where(m.reshape(m.shape + (1,) * (new.ndim - 1)), new, old)

    def put_track(new, old):  # [K, B, ...]
        return jnp.where(take_B.reshape((1, -1) + (1,) * (new.ndim - 2)), new, old)

    return state.replace(
        z=tuple(put(take_B, n, o) for n, o in zip(fresh.z, state.z)),
        inputs=put(take_B, fresh.inputs, state.inputs),
        ids=put(take_B, fresh.ids, state.ids),
        index=put(take_B, fresh.index, state.index),
        t=jnp.where(take_B, 0, state.t),
        done=jnp.where(take_B, False, state.done),
        active=jnp.where(take_B, True, state.active & ~state.done),
        track=jax.tree.map(put_track, fresh.track, state.track),
    )


def _advance(model, K, noisy, stops_early, variables, table, state, n, sigma, seed):
    """Steps until some active slot is done (or none is active)."""
    body = _body(model, K, noisy, stops_early, variables, table, n, sigma, jax.random.key(seed))

    def cond(s):
        return jnp.any(s.active & ~s.done) & ~jnp.any(s.active & s.done)

    state = jax.lax.while_loop(cond, body, state)
    return state, _finish(state.track)


@functools.cache
def _jitted_stream(model: TRMModel, K: int, noisy: bool, stops_early: bool):
    return (
        jax.jit(functools.partial(_init_state, model), static_argnums=(1,)),
        jax.jit(functools.partial(_refill, model, K)),
        jax.jit(functools.partial(_advance, model, K, noisy, stops_early)),
    )


# --------------------------------------------------------------------------------------------
# Many puzzles


@dataclasses.dataclass
class Solutions:
    """Answers for P puzzles under every selection rule, and what they cost.

    ``choices[rule]``: numpy tt.Choice (answer [P, L], q_halt [P], step [P], trajectory [P]);
    ``trajectories[rule]``: (answers [K, P, L], q_halt [K, P]); ``steps`` [P]: steps each puzzle
    ran; ``verified[rule]``: (answers [P, L], trajectory [P] or -1) when a check was given;
    ``seconds`` (wall time, first compile included unless warmed up), ``row_steps``: steps
    computed over all K*B rows of every batch (padding and finished rows included).
    """

    settings: tt.InferenceSettings
    choices: dict
    trajectories: dict
    steps: np.ndarray
    verified: dict | None
    seconds: float
    row_steps: int
    net_applications_per_step: int
    continuous: bool

    @property
    def num_puzzles(self) -> int:
        return int(self.steps.shape[0])

    @property
    def answer(self) -> np.ndarray:
        """The model-only answers of ``settings.select`` [P, L] (``verified`` is apart)."""
        return self.choices[self.settings.select].answer

    @property
    def net_applications_per_puzzle(self) -> float:
        """Net applications computed per puzzle (every row of every batch counted)."""
        return self.row_steps * self.net_applications_per_step / max(self.num_puzzles, 1)

    @property
    def puzzles_per_second(self) -> float:
        return self.num_puzzles / max(self.seconds, 1e-9)


def net_applications_per_step(cfg: ModelConfig) -> int:
    """Applications of the reasoning net in one evaluation-mode supervision step of one row."""
    return int(cfg.net_applications)


def _to_host(results: dict) -> tuple[dict, dict]:
    host = jax.device_get(results)
    choices = {r: tt.Choice(*(np.asarray(a) for a in host[r][0])) for r in tt.SELECT_RULES}
    trajectories = {r: (np.asarray(host[r][1]), np.asarray(host[r][2])) for r in tt.SELECT_RULES}
    return choices, trajectories


def solve_many(
    model: TRMModel,
    variables,
    puzzle_table,
    inputs_PxL: np.ndarray,
    ids_P: np.ndarray,
    settings: tt.InferenceSettings | None = None,
    *,
    batch_size: int,
    continuous: bool = False,
    check: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    progress=None,
) -> Solutions:
    """Answer every puzzle of ``inputs`` under ``settings``, ``batch_size`` puzzles at a time.

    Plain loop (``continuous=False``): fixed chunks of ``batch_size`` puzzles (the last padded by
    repeating its first puzzle), each a :func:`rollout_batch`. Continuous batching: a fixed
    batch of ``batch_size`` slots in which a finished puzzle is replaced by the next one, so
    with ``first_halt`` no slot waits for the slowest puzzle of its batch; every puzzle is
    answered exactly once, with the same noise keys, so the answers are the plain loop's.
    ``check`` (the task's rule check) fills ``Solutions.verified`` for every rule.
    ``progress``: a :class:`trm_jax.progress.Progress` over puzzles (or None).
    """
    settings = settings or tt.InferenceSettings()
    inputs = np.asarray(inputs_PxL, np.int32)
    ids = np.asarray(ids_P, np.int32)
    P, L = inputs.shape
    K = settings.samples
    B = int(batch_size)
    if B < 1:
        raise tt.SettingsError(f"batch_size must be >= 1, got {batch_size}.")
    t0 = time.perf_counter()
    choices = {
        r: tt.Choice(
            np.zeros((P, L), np.int32),
            np.zeros(P, np.float32),
            np.zeros(P, np.int32),
            np.zeros(P, np.int32),
        )
        for r in tt.SELECT_RULES
    }
    trajectories = {
        r: (np.zeros((K, P, L), np.int32), np.zeros((K, P), np.float32)) for r in tt.SELECT_RULES
    }
    steps = np.zeros(P, np.int32)
    seen = np.zeros(P, np.int32)
    row_steps = 0

    def store(rows_P, slots, ch, tr, t):
        for r in tt.SELECT_RULES:
            for field, dst in zip(ch[r], choices[r]):
                dst[rows_P] = field[slots]
            trajectories[r][0][:, rows_P] = tr[r][0][:, slots]
            trajectories[r][1][:, rows_P] = tr[r][1][:, slots]
        steps[rows_P] = t[slots]
        np.add.at(seen, rows_P, 1)

    if not continuous:
        for lo in range(0, P, B):
            x, i = inputs[lo : lo + B], ids[lo : lo + B]
            idx = np.arange(lo, lo + x.shape[0], dtype=np.int32)
            n = x.shape[0]
            if n < B:
                x = np.concatenate([x, np.repeat(x[:1], B - n, 0)])
                i = np.concatenate([i, np.repeat(i[:1], B - n)])
                idx = np.concatenate([idx, np.repeat(idx[:1], B - n)])
            results, t, iters = rollout_batch(model, variables, puzzle_table, x, i, settings, idx)
            ch, tr = _to_host(results)
            store(np.arange(lo, lo + n), np.arange(n), ch, tr, np.asarray(jax.device_get(t)))
            row_steps += int(iters) * K * B
            if progress is not None:
                progress.update(lo + n)
    else:
        init, refill, advance = _jitted_stream(model, K, settings.sigma > 0, settings.stops_early)
        n_steps = jnp.asarray(settings.num_steps(model.cfg), jnp.int32)
        sigma = jnp.asarray(settings.sigma, jnp.float32)
        seed = jnp.asarray(settings.seed, jnp.uint32)
        zeros = np.zeros((B,), np.int32)
        state = init(
            variables, K, jnp.zeros((B, L), jnp.int32), zeros, zeros, jnp.zeros((B,), bool)
        )
        slot_puzzle = np.full(B, -1, np.int64)
        next_p = done_count = 0
        free = np.ones(B, bool)
        while True:
            take = np.zeros(B, bool)
            new_x = np.zeros((B, L), np.int32)
            new_i = np.zeros(B, np.int32)
            new_idx = np.zeros(B, np.int32)
            for b in np.flatnonzero(free):
                if next_p >= P:
                    break
                take[b], new_x[b], new_i[b], new_idx[b] = True, inputs[next_p], ids[next_p], next_p
                slot_puzzle[b] = next_p
                next_p += 1
            state = refill(variables, state, take, new_x, new_i, new_idx)
            iters_before = int(state.iters)
            free = ~take & free
            if not (slot_puzzle >= 0).any():
                break
            state, results = advance(variables, puzzle_table, state, n_steps, sigma, seed)
            host = jax.device_get({"done": state.done, "active": state.active, "t": state.t})
            row_steps += (int(state.iters) - iters_before) * K * B
            finished = np.flatnonzero(host["done"] & host["active"])
            ch, tr = _to_host(results)
            store(slot_puzzle[finished], finished, ch, tr, np.asarray(host["t"]))
            done_count += finished.size
            slot_puzzle[finished] = -1
            free = np.zeros(B, bool)
            free[finished] = True
            free |= slot_puzzle < 0
            if progress is not None:
                progress.update(done_count)
    if progress is not None:
        progress.update(P, force=True)
    if P and not (seen == 1).all():  # a bookkeeping error must never pass silently
        raise RuntimeError(f"{int((seen != 1).sum())} puzzles were not answered exactly once.")
    verified = None
    if check is not None:
        verified = {
            r: tt.verify_choice(inputs, trajectories[r][0], choices[r].answer, check)
            for r in tt.SELECT_RULES
        }
    return Solutions(
        settings=settings,
        choices=choices,
        trajectories=trajectories,
        steps=steps,
        verified=verified,
        seconds=time.perf_counter() - t0,
        row_steps=row_steps,
        net_applications_per_step=net_applications_per_step(model.cfg),
        continuous=continuous,
    )


# --------------------------------------------------------------------------------------------
# A dataset split under inference settings (``python -m trm_jax.evaluate --samples ...``)


def load_split(data_dir: str, split: str, max_examples: int = 0):
    """(inputs [P, L], labels [P, L], puzzle ids [P], example index [P]) of the first
    ``max_examples`` examples of a split (0: all), on one process."""
    from trm_jax.data import pipeline  # lazy: keeps this module free of the data pipeline

    parts: list = [[], [], [], []]
    n = 0
    for b in pipeline.eval_batches(data_dir, global_batch_size=256, split=split):
        keep = np.flatnonzero(b["valid"])
        for dst, k in zip(parts, ("inputs", "labels", "puzzle_identifiers", "example_index")):
            dst.append(np.asarray(b[k])[keep])
        n += keep.size
        if max_examples and n >= max_examples:
            break
    out = [np.concatenate(p).astype(np.int32) for p in parts]
    m = max_examples or out[0].shape[0]
    return tuple(a[:m] for a in out)


def score_split(
    trm,
    data_dir: str,
    split: str,
    settings: tt.InferenceSettings,
    *,
    batch_size: int,
    max_examples: int = 0,
    voter=None,
    progress=None,
) -> tuple[dict, dict, Solutions]:
    """Score a split of a loaded model ``trm`` under ``settings``: ``(metrics, predictions,
    solutions)``. Metrics as the reference's evaluation names them (``exact_accuracy``,
    ``accuracy``, ``q_halt_accuracy`` of the selected answer, ``steps`` run per puzzle, ``count``)
    plus ``exact_accuracy_verify`` with ``verify``, ``puzzles_per_second`` and
    ``net_applications_per_puzzle``. ``batch_size`` rows per batch: ``batch_size // K`` puzzles;
    continuous batching with ``first_halt``. ``voter`` (ARC) receives every trajectory's answer."""
    if jax.process_count() > 1:
        raise tt.SettingsError("test-time settings are scored on one process; run without them.")
    settings = settings.for_task(trm.task)
    x, y, ids, index = load_split(data_dir, split, max_examples)
    check = tt.answer_check(trm.task) if settings.verify else None
    sol = solve_many(
        trm.model,
        trm.variables,
        trm.puzzle_table,
        x,
        ids,
        settings,
        batch_size=max(1, batch_size // settings.samples),
        continuous=settings.stops_early,
        check=check,
        progress=progress,
    )
    choice = sol.choices[settings.select]
    mask = y != -100
    valid = mask.any(axis=1)
    count = max(int(valid.sum()), 1)
    per_row = np.maximum(mask.sum(axis=1), 1)

    def exact(answers):
        return ((answers == y) | ~mask).all(axis=1) & valid

    correct = exact(choice.answer)
    metrics = {
        "exact_accuracy": float(correct.sum() / count),
        "accuracy": float((((choice.answer == y) & mask).sum(1) / per_row)[valid].sum() / count),
        "q_halt_accuracy": float(((choice.q_halt >= 0) == correct)[valid].sum() / count),
        "steps": float(sol.steps[valid].mean()) if valid.any() else 0.0,
        "count": float(valid.sum()),
        "puzzles_per_second": sol.puzzles_per_second,
        "net_applications_per_puzzle": sol.net_applications_per_puzzle,
    }
    if sol.verified is not None:
        metrics["exact_accuracy_verify"] = float(
            exact(sol.verified[settings.select][0]).sum() / count
        )
    if voter is not None:  # every trajectory votes, next to the augmentation votes
        answers_KxPxL, q_KxP = sol.trajectories[settings.select]
        for k in range(settings.samples):
            voter.add_batch(x, ids, q_KxP[k], answers_KxPxL[k])
    predictions = {
        "example_index": index,
        "preds": choice.answer.astype(np.int16),
        "q_halt_logits": choice.q_halt.astype(np.float32),
        "steps": sol.steps.astype(np.int32),
    }
    return metrics, predictions, sol
