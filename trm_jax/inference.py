"""Loading a trained run and using it from Python: ``trm_jax.load`` and the :class:`TRM` object.

::

    import trm_jax
    trm = trm_jax.load("runs/sudoku-cpu")      # latest step; or step=N, or .../checkpoints/N
    answer = trm.solve(puzzle)                 # 81 characters, "." or "0" for blanks
    answer, trace = trm.solve(puzzle, halting="adaptive", trace=True)
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
the model's vocabulary and sequence length (Sudoku 11/81, maze 6/side^2, ARC 12/side^2). Bad puzzles
raise :class:`PuzzleError` (a ``ValueError``) with one sentence.

Shape letters: B batch, L seq_len, N halt_max_steps (supervision steps).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trm_jax import checkpoint as ckpt
from trm_jax import config as config_lib
from trm_jax.act import Carry, act_step, initial_carry
from trm_jax.arc_scoring import crop
from trm_jax.checkpoint import CheckpointError
from trm_jax.data import tokens as tok
from trm_jax.losses import IGNORE_LABEL_ID
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel, init_variables
from trm_jax.steps import evaluate_batch

__all__ = [
    "TASKS",
    "CheckpointError",
    "CheckpointInfo",
    "PuzzleError",
    "TRM",
    "Trace",
    "load",
    "locate",
]

TASKS = ("sudoku", "maze", "arc")
HALTING = ("fixed", "adaptive")
TASK_NAMES = {"sudoku": "Sudoku", "maze": "maze", "arc": "ARC"}
_RESTORED = ("step", "params", "ema_params", "constants", "puzzle_table")
_LOWERABLE = ("act_step", "evaluate", "evaluate_adaptive", "rollout")


class PuzzleError(ValueError):
    """A puzzle that is malformed or does not fit the loaded model."""


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


def _dataset_of(config, meta: dict) -> str:
    candidates = [str(config.data.get("path") or ""), str(meta.get("dataset") or "")]
    for c in candidates:
        if c and os.path.isdir(c):
            return c
    return candidates[0] or candidates[1]


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
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _read_meta(step_dir: Path) -> dict:
    import orbax.checkpoint as ocp

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
        if task in TASKS:
            return task
    V, L = model_config.vocab_size, model_config.seq_len
    side = math.isqrt(L)
    if V == tok.SUDOKU_VOCAB_SIZE and L == tok.SUDOKU_SEQ_LEN:
        return "sudoku"
    if V == tok.MAZE_VOCAB_SIZE and side * side == L:
        return "maze"
    if V == tok.ARC_VOCAB_SIZE and side * side == L:  # any canvas (dataset's canvas_side)
        return "arc"
    return None


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
    if (p / ckpt.CHECKPOINT_DIR).is_dir() or (p / ckpt.CONFIG_FILE).is_file():
        workdir = p
        steps = _steps_in(p / ckpt.CHECKPOINT_DIR)
        if not steps:
            raise CheckpointError(f"{p} has no checkpoints (nothing in {p / ckpt.CHECKPOINT_DIR}).")
        if step is None:
            step = steps[-1]
        elif int(step) not in steps:
            raise CheckpointError(
                f"{p} has no checkpoint for step {step}; it has steps {', '.join(map(str, steps))}."
            )
        step_dir = p / ckpt.CHECKPOINT_DIR / str(step)
    elif p.name.isdigit() and p.is_dir():
        workdir = p.parent.parent
        steps = _steps_in(p.parent)
        if step is not None and int(step) != int(p.name):
            raise CheckpointError(f"{p} is the checkpoint of step {p.name}, not of step {step}.")
        step = int(p.name)
        step_dir = p
    else:
        raise CheckpointError(
            f"{p} is neither a trm_jax work dir (no {ckpt.CHECKPOINT_DIR}/ inside) nor a "
            f"checkpoint directory (.../{ckpt.CHECKPOINT_DIR}/<step>)."
        )
    meta = _read_meta(step_dir)
    mcfg = _model_config(meta, step_dir)
    try:
        config = config_lib.from_json((workdir / ckpt.CONFIG_FILE).read_text())
    except FileNotFoundError:
        warnings.warn(
            f"{workdir} has no {ckpt.CONFIG_FILE}; using the default config (raw weights, "
            "unknown dataset).",
            stacklevel=2,
        )
        config = config_lib.default_config()
        config.data.path = str(meta.get("dataset") or "")
    except ValueError as e:
        raise CheckpointError(
            f"{workdir / ckpt.CONFIG_FILE} is not valid JSON ({_first_line(e)})."
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


def _restore_weights(info: CheckpointInfo, model: TRMModel) -> dict:
    """Partial orbax restore of the parameters, EMA, constants, puzzle table and step."""
    import orbax.checkpoint as ocp

    state_dir = info.path / "state"
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        with _quiet_absl():
            stored = checkpointer.metadata(state_dir).item_metadata.tree
    except Exception as e:
        raise CheckpointError(f"{state_dir} cannot be read ({_first_line(e)}).") from None
    missing = [k for k in _RESTORED if k not in stored]
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


# --------------------------------------------------------------------------------------------
# Puzzles <-> tokens


def _sudoku_conflict(grid_9x9: np.ndarray) -> str | None:
    """The first contradiction among the givens (two equal digits in a unit), or None."""
    units = []
    for i in range(9):
        units.append((f"row {i + 1}", grid_9x9[i, :]))
        units.append((f"column {i + 1}", grid_9x9[:, i]))
        r, c = 3 * (i // 3), 3 * (i % 3)
        units.append((f"box {i + 1}", grid_9x9[r : r + 3, c : c + 3].reshape(-1)))
    for name, cells in units:
        digits = cells[cells > 0]
        values, counts = np.unique(digits, return_counts=True)
        if (counts > 1).any():
            return f"digit {int(values[counts > 1][0])} appears twice in {name}"
    return None


def sudoku_is_solution(puzzle_9x9: np.ndarray, answer_9x9: np.ndarray) -> bool:
    """True if ``answer`` is a complete valid Sudoku grid that keeps the givens of ``puzzle``."""
    a = np.asarray(answer_9x9)
    if a.shape != (9, 9) or a.min() < 1 or a.max() > 9:
        return False
    if _sudoku_conflict(a) is not None:
        return False
    givens = np.asarray(puzzle_9x9) > 0
    return bool(np.array_equal(a[givens], np.asarray(puzzle_9x9)[givens]))


def _as_maze_rows(puzzle: Any) -> list[str]:
    if isinstance(puzzle, str):
        text = puzzle.replace("\r\n", "\n").replace("\r", "\n")
        rows = text.split("\n")
        while rows and rows[-1] == "":
            rows.pop()
        if len(rows) == 1:
            side = math.isqrt(len(rows[0]))
            if side > 1 and side * side == len(rows[0]):
                rows = [rows[0][i : i + side] for i in range(0, len(rows[0]), side)]
        return rows
    a = np.asarray(puzzle)
    if a.ndim == 1:
        return [str(r) for r in a]
    if a.ndim == 2:
        return ["".join(str(ch) for ch in r) for r in a]
    raise PuzzleError(f"a maze must be text or a 2-D grid of characters, got shape {a.shape}.")


def maze_problem(rows: list[str], side: int) -> str | None:
    """What is wrong with a maze question for a model of ``side`` x ``side``, or None."""
    if len(rows) != side or any(len(r) != side for r in rows):
        widths = sorted({len(r) for r in rows})
        shown = widths[0] if len(widths) == 1 else f"{widths[0]}-{widths[-1]}"
        return (
            f"the maze must be {side} lines of {side} characters, got {len(rows)} lines of "
            f"{shown} characters"
        )
    text = "".join(rows)
    bad = sorted(set(text) - set("# SG"))
    if bad:
        return f"the maze may hold only '#', ' ', 'S' and 'G', found {bad[0]!r}"
    for ch, what in (("S", "start"), ("G", "goal")):
        n = text.count(ch)
        if n != 1:
            return f"the maze has {'no' if n == 0 else n} '{ch}' ({what}); it needs exactly one"
    return None


def maze_answer_report(question: np.ndarray, answer: np.ndarray) -> tuple[bool, str]:
    """Whether ``answer`` marks a shortest S-G path with 'o' and leaves the rest unchanged."""
    q, a = np.asarray(question), np.asarray(answer)
    path = a == "o"
    if not np.array_equal(np.where(path, " ", a), q):
        return False, "the answer changes cells other than by marking the path"
    if (path & (q != " ")).any():
        return False, "the path crosses a wall"
    side = q.shape[0]
    start = tuple(np.argwhere(q == "S")[0])
    goal = tuple(np.argwhere(q == "G")[0])

    def bfs(allowed):
        dist = {start: 0}
        frontier = [start]
        while frontier:
            nxt = []
            for r, c in frontier:
                for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    y, x = r + dr, c + dc
                    if 0 <= y < side and 0 <= x < side and allowed[y, x] and (y, x) not in dist:
                        dist[(y, x)] = dist[(r, c)] + 1
                        nxt.append((y, x))
            frontier = nxt
        return dist.get(goal)

    shortest = bfs(q != "#")
    marked = bfs(path | (q == "G"))
    n = int(path.sum())
    if marked is None:
        return False, f"the {n} marked cells do not connect S to G"
    if shortest is not None and n == shortest - 1 and marked == shortest:
        return True, f"a shortest S-G path of {shortest} steps"
    return False, f"the marked path ({n} cells) is not a shortest S-G path ({shortest} steps)"


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


def halt_steps(q_halt_NxB: np.ndarray, halting: str) -> np.ndarray:
    """1-based answer step per row: the last (fixed) or the first with q_halt > 0 (adaptive)."""
    q = np.asarray(q_halt_NxB)
    N = q.shape[0]
    if halting == "fixed":
        return np.full(q.shape[1], N, np.int32)
    over = q > 0
    return np.where(over.any(axis=0), over.argmax(axis=0) + 1, N).astype(np.int32)


def _rollout(model: TRMModel, variables, puzzle_table, batch: dict):
    """All ``halt_max_steps`` evaluation steps of a fresh batch: preds [N,B,L], q_halt [N,B].

    The same chain of ``act_step`` calls as :func:`~trm_jax.steps.evaluate_batch`, keeping every
    step's outputs instead of the last one only.
    """
    carry = initial_carry(model, batch)

    def body(carry, _):
        carry, out, _, _ = act_step(model, variables, puzzle_table, carry, batch)
        return carry, (out["preds"], out["q_halt_logits"])

    _, (preds, q_halt) = jax.lax.scan(body, carry, None, length=model.cfg.halt_max_steps)
    return preds, q_halt


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
        """Every step's predictions and q_halt of a fresh batch: ``(preds [N,B,L], q [N,B])``."""
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

    def _check_task(self, task: str | None, what: str = "the puzzle") -> str:
        if task is not None and task not in TASKS:
            raise PuzzleError(f"task must be one of {TASKS}, got {task!r}.")
        mine = self.task
        if mine is None:
            raise PuzzleError(
                f"cannot tell which puzzle kind the checkpoint {self.info.path} solves "
                f"(vocabulary {self.model_config.vocab_size}, sequence length "
                f"{self.model_config.seq_len})."
            )
        if task is not None and task != mine:
            raise PuzzleError(mismatch_message(self.info, task, what))
        return mine

    def encode(self, puzzle: Any, task: str | None = None) -> np.ndarray:
        """Validate a puzzle and turn it into int32 tokens [L] for this model."""
        task = self._check_task(task)
        if task == "sudoku":
            tokens = encode_sudoku(puzzle)
        elif task == "maze":
            tokens = encode_maze(puzzle, math.isqrt(self.model_config.seq_len))
        else:
            try:
                side = math.isqrt(self.model_config.seq_len)
                tokens = tok.arc_grid_to_tokens(puzzle, side=side)
            except ValueError as e:
                raise PuzzleError(str(e)) from None
        return tokens.astype(np.int32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens [L] -> grid: Sudoku int 9x9 (0 = not a digit), maze chars, ARC cropped ints."""
        t = np.asarray(tokens).reshape(-1)
        task = self._check_task(None)
        if task == "sudoku":
            d = t.astype(np.int64) - 1
            return np.where((d >= 1) & (d <= 9), d, 0).reshape(9, 9)
        if task == "maze":
            side = math.isqrt(t.size)
            chars = np.array(["?"] + list(tok.MAZE_CHARSET))
            return chars[np.where((t >= 1) & (t < tok.MAZE_VOCAB_SIZE), t, 0)].reshape(side, side)
        return crop(t).astype(np.int64)

    def solve_tokens(
        self, tokens_BxL: np.ndarray, ids_B: np.ndarray, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every step's predictions and q_halt for many puzzles: ``(preds [N,B,L], q [N,B])``.

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
        preds, qs = [], []
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
            p, q = jax.device_get(self.rollout(batch))
            preds.append(np.asarray(p)[:, :n])
            qs.append(np.asarray(q, np.float32)[:, :n])
        return np.concatenate(preds, axis=1), np.concatenate(qs, axis=1)

    def solve(
        self,
        puzzle: Any,
        task: str | None = None,
        halting: str = "fixed",
        trace: bool = False,
        puzzle_id: str | int | None = None,
        batch_size: int | None = None,
    ):
        """Solve one puzzle; returns the answer grid, or ``(answer, Trace)`` with ``trace``.

        ``puzzle``: a Sudoku string of 81 characters or 9x9 ints (0 blank); a maze as text
        (lines or one line) or a grid of characters; an ARC grid (ints 0..9, at most 30x30).
        ``task`` (optional) must match the model. ``halting``: ``fixed`` answers with the last
        of the ``halt_max_steps`` steps (the reference), ``adaptive`` with the first step whose
        q_halt > 0. ``puzzle_id``: the ARC puzzle name (or row) for the puzzle embedding.
        ``batch_size``: run the puzzle padded to this many rows (see :meth:`solve_tokens`;
        pass the evaluation batch size to reproduce ``evaluate``'s prediction bit for bit).
        """
        if halting not in HALTING:
            raise ValueError(f"halting must be one of {HALTING}, got {halting!r}.")
        tokens = self.encode(puzzle, task)
        row, warning = self.puzzle_id(puzzle_id)
        if warning:
            warnings.warn(warning, stacklevel=2)
        preds, q = self.solve_tokens(tokens[None], np.array([row]), batch_size)
        halt = int(halt_steps(q, halting)[0])
        answer = self.decode(preds[halt - 1, 0])
        if not trace:
            return answer
        return answer, Trace(
            puzzle=self.decode(tokens),
            predictions=[self.decode(p) for p in preds[:, 0]],
            q_halt=q[:, 0],
            halt_step=halt,
        )


def mismatch_message(info: CheckpointInfo, task: str, what: str = "the puzzle") -> str:
    c = info.model_config
    need = {
        "sudoku": f"vocabulary {tok.SUDOKU_VOCAB_SIZE} and sequence length {tok.SUDOKU_SEQ_LEN}",
        "maze": f"vocabulary {tok.MAZE_VOCAB_SIZE} and a square sequence length",
        "arc": f"vocabulary {tok.ARC_VOCAB_SIZE} and a square sequence length",
    }[task]
    kind = TASK_NAMES.get(info.task or "", "an unknown kind of")
    return (
        f"{what} is a {TASK_NAMES[task]} puzzle but the checkpoint {info.path} is a {kind} model "
        f"(vocabulary {c.vocab_size}, sequence length {c.seq_len}); a {TASK_NAMES[task]} model "
        f"has {need}."
    )


def encode_sudoku(puzzle: Any) -> np.ndarray:
    """Validate a Sudoku (81-character string or 9x9 ints) -> uint8 tokens [81]."""
    if isinstance(puzzle, str):
        puzzle = puzzle.strip()
    try:
        tokens = tok.sudoku_to_tokens(puzzle)
    except ValueError as e:
        raise PuzzleError(str(e)) from None
    conflict = _sudoku_conflict(tokens.astype(np.int64).reshape(9, 9) - 1)
    if conflict:
        raise PuzzleError(f"the givens contradict each other: {conflict}.")
    return tokens


def encode_maze(puzzle: Any, side: int = 30) -> np.ndarray:
    """Validate a maze question (text or grid of '#', ' ', 'S', 'G') -> uint8 tokens."""
    rows = _as_maze_rows(puzzle)
    problem = maze_problem(rows, side)
    if problem:
        raise PuzzleError(problem + ".")
    return tok.maze_to_tokens("".join(rows))


def load(path: str | os.PathLike, step: int | None = None, *, ema: bool | None = None) -> TRM:
    """Load a trained run: a work dir (latest step, or ``step``) or a ``.../checkpoints/<N>`` dir.

    ``ema``: use the EMA parameters (default: when the run trained with ``train.ema``).
    Raises :class:`~trm_jax.checkpoint.CheckpointError` (one sentence) for a missing or foreign
    checkpoint.
    """
    info = locate(path, step)
    restored = _restore_weights(info, TRMModel(info.model_config))
    return TRM(info, restored, use_ema=ema)
