"""Loading a trained run and using it from Python: ``trm_jax.load`` and the :class:`TRM` object.

::

    import trm_jax
    trm = trm_jax.load("runs/sudoku-cpu")      # latest step; or step=N, or .../checkpoints/N
    answer = trm.solve(puzzle)                 # 81 characters, "." or "0" for blanks
    answer, trace = trm.solve(puzzle, halting="adaptive", trace=True)
    answer = trm.solve(puzzle, samples=4, sigma=0.1, select="vote")   # test-time compute
    answers = trm.solve_many(puzzles, settings=InferenceSettings(steps=32), batch_size=64)
    trm.export("sudoku.jaxexport", batch_size=8, settings=InferenceSettings(select="q_halt"))
    trace.predictions[k], trace.q_halt[k]      # decoded z_H prediction, q_halt after step k+1
    carry = trm.initial_carry(batch); carry, out, loss, metrics = trm.act_step(carry, batch)
    outputs, sums = trm.evaluate(batch, adaptive=False)
    lowered = trm.lower("act_step", batch_size=8)   # .as_text(), .cost_analysis()
    compiled = trm.compile("act_step", batch_size=8)  # + .memory_analysis()

A checkpoint is a step directory ``<workdir>/checkpoints/<N>`` written by ``trm_jax.train``; its
``meta`` item holds the model config, and ``<workdir>/config.json`` the run's full config. Only
the parameters, their EMA, the fixed initial states and the puzzle table are restored (not the
optimizer state or the training carry). A missing or foreign checkpoint raises
:class:`~trm_jax.checkpoint.CheckpointError` with one sentence.

Tasks are told apart by the dataset's ``task`` metadata when the run's dataset is present, else by
the model's vocabulary and sequence length (Sudoku 11/81, maze 6/side^2, ARC 12/900). Bad puzzles
raise :class:`PuzzleError` (a ``ValueError``) with one sentence.

Shape letters: B batch, L seq_len, N halt_max_steps (supervision steps).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trm_jax import batching, tasks
from trm_jax import test_time as tt
from trm_jax.act import Carry, act_step, initial_carry, wants_halt
from trm_jax.checkpoint import CheckpointError, CheckpointInfo, locate, restore_weights
from trm_jax.losses import IGNORE_LABEL_ID
from trm_jax.model.trm import TRMModel
from trm_jax.steps import evaluate_batch
from trm_jax.tasks import PuzzleError

# The facade: ``locate`` and ``CheckpointInfo`` live in trm_jax.checkpoint, PuzzleError in
# trm_jax.tasks; they are named here so a notebook needs one import.
__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "PuzzleError",
    "TRM",
    "Trace",
    "halt_steps",
    "load",
    "locate",
]

HALTING = ("fixed", "adaptive")
_LOWERABLE = ("act_step", "evaluate", "evaluate_adaptive", "rollout")


@dataclasses.dataclass(frozen=True)
class Trace:
    """The refinement of one puzzle: the decoded prediction and q_halt after each step."""

    puzzle: np.ndarray  # the decoded input grid
    predictions: list  # N decoded grids, one per supervision step
    q_halt: np.ndarray  # float32 [N] halting logits
    halt_step: int  # 1-based step whose prediction is the answer

    @property
    def halt_probability(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.q_halt.astype(np.float64)))

    @property
    def answer(self) -> np.ndarray:
        return self.predictions[self.halt_step - 1]


def halt_steps(halts_NxB: np.ndarray, halting: str) -> np.ndarray:
    """1-based answer step per row: the last (fixed), or the first step at which the halting rule
    fired (adaptive; the last if it never did). ``halts_NxB`` is :meth:`TRM.halts` of a rollout."""
    h = np.asarray(halts_NxB, bool)
    N = h.shape[0]
    if halting == "fixed":
        return np.full(h.shape[1], N, np.int32)
    return np.where(h.any(axis=0), h.argmax(axis=0) + 1, N).astype(np.int32)


def _rollout(model: TRMModel, variables, puzzle_table, batch: dict):
    """All ``halt_max_steps`` evaluation steps of a fresh batch: preds [N,B,L], q_halt [N,B],
    q_continue [N,B].

    The same chain of ``act_step`` calls as :func:`~trm_jax.steps.evaluate_batch`, keeping every
    step's outputs instead of the last one only.
    """
    carry = initial_carry(model, batch)

    def body(carry, _):
        carry, out, _, _ = act_step(model, variables, puzzle_table, carry, batch)
        return carry, (out["preds"], out["q_halt_logits"], out["q_continue_logits"])

    _, outs = jax.lax.scan(body, carry, None, length=model.cfg.halt_max_steps)
    return outs


# --------------------------------------------------------------------------------------------
# The loaded model


class TRM:
    """A trained TRM with its weights, and functions bound to them (see the module docstring).

    Attributes: ``config`` (the run's ConfigDict), ``model_config``, ``model`` (the linen
    module), ``params``, ``ema_params``, ``constants``, ``puzzle_table``, ``step``, ``task``,
    ``info`` (:class:`CheckpointInfo`) and ``use_ema`` (which parameters ``variables`` holds).
    """

    def __init__(self, info: CheckpointInfo, restored: dict, use_ema: bool | None = None):
        self.info = info
        self.config = info.config
        self.model_config = info.model_config
        self.model = TRMModel(info.model_config)
        self.task = info.task
        self.step = int(restored["step"])
        self.params = restored["params"]
        self.ema_params = restored["ema_params"]
        self.constants = restored["constants"]
        self.puzzle_table = restored["puzzle_table"]
        self.use_ema = bool(self.config.train.get("ema", False)) if use_ema is None else use_ema
        self._identifiers: list[str] | None = None
        self._identifiers_read = False
        model = self.model
        self._act_step = jax.jit(functools.partial(act_step, model))
        self._evaluate = jax.jit(
            functools.partial(evaluate_batch, model), static_argnames=("adaptive",)
        )
        self._rollout = jax.jit(functools.partial(_rollout, model))

    def __repr__(self) -> str:
        c = self.model_config
        n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))
        return (
            f"TRM({c.arch}, task={self.task}, step={self.step}, {n:,} parameters, "
            f"T={c.H_cycles} n={c.L_cycles} N_sup={c.halt_max_steps}, "
            f"{'EMA' if self.use_ema else 'raw'} weights, {self.info.path})"
        )

    # ---- weights and bound functions ------------------------------------------------------

    @property
    def weights(self):
        """The parameters in use: the EMA when ``use_ema``, else the raw ones."""
        return self.ema_params if self.use_ema else self.params

    @property
    def variables(self) -> dict:
        return {"params": self.weights, "constants": self.constants}

    def to(self, sharding) -> TRM:
        """Place the weights and the puzzle table on ``sharding`` (e.g. replicated on a mesh)."""
        put = functools.partial(jax.device_put, device=sharding)
        self.params, self.ema_params = put(self.params), put(self.ema_params)
        self.constants, self.puzzle_table = put(self.constants), put(self.puzzle_table)
        return self

    def initial_carry(self, batch: dict) -> Carry:
        """An all-halted carry for ``batch`` (the first ``act_step`` loads every row)."""
        return initial_carry(self.model, batch)

    def act_step(self, carry: Carry, batch: dict):
        """One evaluation-mode supervision step (jitted): ``(carry, outputs, loss, metrics)``."""
        return self._act_step(self.variables, self.puzzle_table, carry, batch)

    def evaluate(self, batch: dict, adaptive: bool = False):
        """:func:`trm_jax.steps.evaluate_batch` on the loaded weights (jitted)."""
        return self._evaluate(
            self.weights, self.constants, self.puzzle_table, batch, adaptive=adaptive
        )

    def rollout(self, batch: dict):
        """Every step's preds [N,B,L], q_halt [N,B] and q_continue [N,B] of a fresh batch."""
        return self._rollout(self.variables, self.puzzle_table, batch)

    def dummy_batch(self, batch_size: int = 1) -> dict:
        L = self.model_config.seq_len
        return {
            "inputs": jnp.zeros((batch_size, L), jnp.int32),
            "labels": jnp.full((batch_size, L), IGNORE_LABEL_ID, jnp.int32),
            "puzzle_identifiers": jnp.zeros((batch_size,), jnp.int32),
        }

    def lower(self, fn_name: str = "act_step", batch_size: int = 1) -> jax.stages.Lowered:
        """Lower a bound function for ``batch_size`` rows: ``.as_text()`` (StableHLO),
        ``.cost_analysis()``, ``.compile()``. ``fn_name``: act_step, evaluate,
        evaluate_adaptive or rollout."""
        batch = self.dummy_batch(batch_size)
        table = self.puzzle_table
        if fn_name == "act_step":
            carry = self.initial_carry(batch)
            return self._act_step.lower(self.variables, table, carry, batch)
        if fn_name in ("evaluate", "evaluate_adaptive"):
            return self._evaluate.lower(
                self.weights,
                self.constants,
                table,
                batch,
                adaptive=fn_name == "evaluate_adaptive",
            )
        if fn_name == "rollout":
            return self._rollout.lower(self.variables, table, batch)
        raise ValueError(f"fn_name must be one of {_LOWERABLE}, got {fn_name!r}.")

    def compile(self, fn_name: str = "act_step", batch_size: int = 1) -> jax.stages.Compiled:
        """The compiled executable: ``.as_text()`` (optimised HLO), ``.cost_analysis()``,
        ``.memory_analysis()``."""
        return self.lower(fn_name, batch_size).compile()

    # ---- identifiers ------------------------------------------------------------------------

    @property
    def identifiers(self) -> list[str] | None:
        """Puzzle names of the run's dataset (index = embedding row), or None if unavailable."""
        if not self._identifiers_read:
            self._identifiers_read = True
            if self.info.dataset:
                from trm_jax.data import dataset as ds

                try:
                    self._identifiers = ds.load_identifiers(self.info.dataset)
                except ValueError:
                    self._identifiers = None
        return self._identifiers

    def puzzle_id(self, name: str | int | None) -> tuple[int, str | None]:
        """(embedding row, warning or None) for an ARC puzzle name; unseen names get row 0."""
        if not self.model_config.puzzle_len or self.task != "arc":
            return 0, None
        if isinstance(name, (int, np.integer)):
            rows = self.puzzle_table.shape[0]
            if not 0 <= int(name) < rows:
                raise PuzzleError(f"puzzle identifier {name} is outside the table of {rows} rows.")
            return int(name), None
        names = self.identifiers
        if name is not None and names is not None and name in names:
            return names.index(name), None
        why = (
            f"ARC task {name!r} was not seen in training"
            if names is not None and name is not None
            else "the run's identifiers.json is not available"
            if names is None
            else "the ARC task has no name"
        )
        return 0, (
            f"{why}, so its puzzle embedding is the blank row 0; expect a poor answer "
            "(TRM learns one embedding per training puzzle)."
        )

    # ---- puzzles ------------------------------------------------------------------------------

    @property
    def record(self) -> tasks.Task:
        """The task record (:mod:`trm_jax.tasks`) of this model; PuzzleError if unknown."""
        if self.task is None:
            raise PuzzleError(
                f"cannot tell which puzzle kind the checkpoint {self.info.path} solves "
                f"(vocabulary {self.model_config.vocab_size}, sequence length "
                f"{self.model_config.seq_len})."
            )
        return tasks.named(self.task, self.model_config.seq_len)

    def _check_task(self, task: str | None, what: str = "the puzzle") -> tasks.Task:
        if task is not None and task not in tasks.NAMES:
            raise PuzzleError(f"task must be one of {tasks.NAMES}, got {task!r}.")
        record = self.record
        if task is not None and task != record.name:
            raise PuzzleError(mismatch_message(self.info, task, what))
        return record

    def encode(self, puzzle: Any, task: str | None = None) -> np.ndarray:
        """Validate a puzzle and turn it into int32 tokens [L] for this model."""
        return self._check_task(task).parse(puzzle).astype(np.int32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens [L] -> grid: Sudoku int 9x9 (0 = not a digit), maze chars, ARC cropped ints."""
        return self.record.decode(tokens)

    def halts(self, q_halt_NxB: np.ndarray, q_continue_NxB: np.ndarray) -> np.ndarray:
        """bool [N, B]: where the halting rule :func:`trm_jax.act.wants_halt` fires, the rule
        training and ``evaluate --halting adaptive`` use."""
        q, qc = np.asarray(q_halt_NxB), np.asarray(q_continue_NxB)
        return np.asarray(wants_halt(self.model_config, q, qc))

    def solve_tokens(
        self, tokens_BxL: np.ndarray, ids_B: np.ndarray, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every step's predictions, q_halt and q_continue for many puzzles:
        ``(preds [N,B,L], q_halt [N,B], q_continue [N,B])``.

        Runs in chunks of ``batch_size`` rows (default: all), the last (or only) chunk padded by
        repeating its first row, so every chunk has the compiled shape of ``batch_size`` rows.
        XLA may pick other kernels for other batch shapes, and the recursion amplifies their
        rounding differences, so predictions equal those of ``evaluate`` exactly when the batch
        sizes are equal.
        """
        tokens_BxL = np.asarray(tokens_BxL, np.int32)
        ids_B = np.asarray(ids_B, np.int32)
        B = tokens_BxL.shape[0]
        chunk = int(batch_size) if batch_size else B
        preds, qs, qcs = [], [], []
        for lo in range(0, B, chunk):
            x, ids = tokens_BxL[lo : lo + chunk], ids_B[lo : lo + chunk]
            n = x.shape[0]
            if n < chunk:
                x = np.concatenate([x, np.repeat(x[:1], chunk - n, 0)])
                ids = np.concatenate([ids, np.repeat(ids[:1], chunk - n)])
            batch = {
                "inputs": jnp.asarray(x),
                "labels": jnp.full(x.shape, IGNORE_LABEL_ID, jnp.int32),
                "puzzle_identifiers": jnp.asarray(ids),
            }
            p, q, qc = jax.device_get(self.rollout(batch))
            preds.append(np.asarray(p)[:, :n])
            qs.append(np.asarray(q, np.float32)[:, :n])
            qcs.append(np.asarray(qc, np.float32)[:, :n])
        return tuple(np.concatenate(x, axis=1) for x in (preds, qs, qcs))

    def solve(
        self,
        puzzle: Any,
        task: str | None = None,
        halting: str = "fixed",
        trace: bool = False,
        puzzle_id: str | int | None = None,
        batch_size: int | None = None,
        settings: tt.InferenceSettings | None = None,
        **setting_overrides,
    ):
        """Solve one puzzle; returns the answer grid, or ``(answer, Trace)`` with ``trace``.

        ``puzzle``: a Sudoku string of 81 characters or 9x9 ints (0 blank); a maze as text
        (lines or one line) or a grid of characters; an ARC grid (ints 0..9, at most 30x30).
        ``task`` (optional) must match the model. ``halting``: ``fixed`` answers with the last
        of the ``halt_max_steps`` steps (the reference), ``adaptive`` with the first step at
        which the training halting rule fires (as ``evaluate --halting adaptive``).
        ``puzzle_id``: the ARC puzzle name (or row) for the puzzle embedding.
        ``batch_size``: run the puzzle padded to this many rows (see :meth:`solve_tokens`;
        pass the evaluation batch size to reproduce ``evaluate``'s prediction bit for bit).
        ``settings`` / keyword settings (``steps=32, samples=4, sigma=0.1, select="vote"``,
        :class:`~trm_jax.test_time.InferenceSettings`): answer as :meth:`solve_many` does.
        """
        if settings is not None or setting_overrides:
            if halting != "fixed" or trace:
                raise tt.SettingsError(
                    "halting='adaptive' and trace=True show the reference's rollout; with "
                    "test-time settings use select='first_halt' and no trace."
                )
            ids = None if puzzle_id is None else [puzzle_id]
            s = tt.settings_with(settings, **setting_overrides)
            return self.solve_many([puzzle], task, s, puzzle_ids=ids, batch_size=batch_size)[0]
        if halting not in HALTING:
            raise ValueError(f"halting must be one of {HALTING}, got {halting!r}.")
        tokens = self.encode(puzzle, task)
        row, warning = self.puzzle_id(puzzle_id)
        if warning:
            warnings.warn(warning, stacklevel=2)
        preds, q, qc = self.solve_tokens(tokens[None], np.array([row]), batch_size)
        halt = int(halt_steps(self.halts(q, qc), halting)[0])
        answer = self.decode(preds[halt - 1, 0])
        if not trace:
            return answer
        return answer, Trace(
            puzzle=self.decode(tokens),
            predictions=[self.decode(p) for p in preds[:, 0]],
            q_halt=q[:, 0],
            halt_step=halt,
        )

    def solve_many(
        self,
        puzzles: list,
        task: str | None = None,
        settings: tt.InferenceSettings | None = None,
        *,
        puzzle_ids: list | None = None,
        batch_size: int | None = None,
        details: bool = False,
        **setting_overrides,
    ):
        """Answer grids for many puzzles under test-time ``settings`` (default: the reference;
        keyword overrides as in :func:`trm_jax.test_time.settings_with`), ``batch_size``
        puzzles at a time (default: all), continuous batching with ``first_halt``. With
        ``verify`` each answer is the first trajectory passing the rule check (else the
        model's). ``details``: also return the :class:`trm_jax.batching.Solutions` (every rule's
        answers, the verified ones apart, steps, seconds, net applications per puzzle)."""
        s = tt.settings_with(settings, **setting_overrides).for_task(self.task)
        tokens = np.stack([self.encode(p, task) for p in puzzles])
        ids = []
        for name in puzzle_ids or [None] * len(puzzles):
            row, warning = self.puzzle_id(name)
            if warning:
                warnings.warn(warning, stacklevel=2)
            ids.append(row)
        sol = batching.solve_many(
            self.model, self.variables, self.puzzle_table, tokens, np.asarray(ids), s,
            batch_size=batch_size or len(puzzles), continuous=s.stops_early,
            check=tt.answer_check(self.task) if s.verify else None,
        )  # fmt: skip
        answers = sol.verified[s.select][0] if s.verify else sol.answer
        grids = [self.decode(a) for a in answers]
        return (grids, sol) if details else grids

    def export(self, out, batch_size: int = 1, settings=None, **setting_overrides):
        """Write the solver, weights and ``settings`` as a ``jax.export`` artifact that loads with
        JAX alone (:func:`trm_jax.export.export`); returns its path."""
        from trm_jax import export  # lazy: keeps ``import trm_jax`` light

        s = tt.settings_with(settings, **setting_overrides)
        return export.export(self, out, batch_size, s)


def mismatch_message(info: CheckpointInfo, task: str, what: str = "the puzzle") -> str:
    """One sentence: ``what`` is a ``task`` puzzle but the checkpoint is another kind of model."""
    c = info.model_config
    want = tasks.named(task)
    kind = tasks.named(info.task).title if info.task else "an unknown kind of"
    return (
        f"{what} is a {want.title} puzzle but the checkpoint {info.path} is a {kind} model "
        f"(vocabulary {c.vocab_size}, sequence length {c.seq_len}); a {want.title} model "
        f"has {want.shape_text}."
    )


def load(
    path: str | os.PathLike | CheckpointInfo, step: int | None = None, *, ema: bool | None = None
) -> TRM:
    """Load a trained run: a work dir (latest step, or ``step``) or a ``.../checkpoints/<N>`` dir
    (or the :class:`CheckpointInfo` that :func:`locate` returned for one).

    ``ema``: use the EMA parameters (default: when the run trained with ``train.ema``).
    Raises :class:`~trm_jax.checkpoint.CheckpointError` (one sentence) for a missing or foreign
    checkpoint.
    """
    info = path if isinstance(path, CheckpointInfo) else locate(path, step)
    restored = restore_weights(info, TRMModel(info.model_config))
    return TRM(info, restored, use_ema=ema)
