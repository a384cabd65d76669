"""Experiment configuration: ml_collections defaults, and the frozen dataclasses jit sees.

Every ``configs/*.py`` starts from :func:`default_config` (the reference's defaults, §3.1 and
§7) and overrides what its experiment changes. At the edge of the program the ConfigDict becomes
frozen dataclasses (:class:`TrainConfig`, :class:`ModelConfig`); nothing inside ``jit`` sees a
ConfigDict. The dataset supplies ``vocab_size``, ``seq_len`` and ``num_puzzle_identifiers``.
"""

from __future__ import annotations

import dataclasses
import json

import ml_collections

from trm_jax.model.config import ModelConfig

DEEP_SUPERVISION = ("carry", "pseudocode")
LR_DECAY_END = ("steps", "time_budget")


def config_module(path):
    """Import a config file (``configs/*.py``) by path and return the module."""
    import importlib.util
    import os

    name = "_trm_config_" + os.path.splitext(os.path.basename(str(path)))[0]
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_config() -> ml_collections.ConfigDict:
    """The reference's defaults (config/cfg_pretrain.yaml, config/arch/trm.yaml)."""
    c = ml_collections.ConfigDict()

    c.data = ml_collections.ConfigDict()
    # Dataset directory (a data_gen build or an official reference build).
    c.data.path = ""
    # Examples per optimizer step over all devices and processes.
    c.data.global_batch_size = 768
    # Examples per evaluation batch over all devices (0: same as training).
    c.data.eval_global_batch_size = 0
    # Split evaluated every eval interval.
    c.data.eval_split = "test"
    # Evaluate at most this many examples of the split (0: all), for quick runs.
    c.data.eval_max_examples = 0
    # Easy-to-hard sampling (trm_jax.data.pipeline.Curriculum; a trm_jax extension): "none" (the
    # reference's epoch order) or "givens" (Sudoku: most givens first); the pool starts at the
    # curriculum_start fraction of the easiest puzzles and covers all after curriculum_batches.
    c.data.curriculum = "none"
    c.data.curriculum_start = 0.25
    c.data.curriculum_batches = 400

    c.model = ml_collections.ConfigDict()
    # trm | trm_singlez | trm_hier6 | hrm | transformer.
    c.model.arch = "trm"
    c.model.hidden_size = 512
    c.model.num_heads = 8
    c.model.expansion = 4.0
    c.model.L_layers = 2
    c.model.H_layers = 0
    # T (answer updates per supervision step) and n (latent updates per answer update).
    c.model.H_cycles = 3
    c.model.L_cycles = 6
    # Width of the per-puzzle embedding (0 disables it) and its prefix length (0: ceil(ndim/D)).
    c.model.puzzle_emb_ndim = 512
    c.model.puzzle_emb_len = 16
    # rope | learned | none.
    c.model.pos_encodings = "rope"
    c.model.rope_theta = 10000.0
    c.model.rms_norm_eps = 1e-5
    # Token-mixing MLP instead of attention (the paper's Sudoku model).
    c.model.mlp_t = False
    # N_sup: supervision steps per puzzle.
    c.model.halt_max_steps = 16
    c.model.halt_exploration_prob = 0.1
    # Halt on q_halt > 0 (True, TRM) or on q_halt > q_continue (False).
    c.model.no_ACT_continue = True
    # bfloat16 | float32 | auto (bfloat16 where the hardware has bf16 matmul units that make it
    # the faster step, float32 elsewhere: trm_jax.model.config.resolve_forward_dtype).
    c.model.forward_dtype = "bfloat16"
    # auto | bfloat16 | float32: storage of activations between bf16 matmuls (auto: float32 on
    # CPUs, where bf16 elementwise work is slow; bfloat16 on accelerators).
    c.model.activation_storage = "auto"
    c.model.loss_type = "stablemax_cross_entropy"
    # trm_hier6: number of low-level latents.
    c.model.num_latents = 6
    # trm_hier6: the latents read as their "sum" (reference) or "mean".
    c.model.latent_sum = "sum"
    # none | block | full: rematerialisation of the graded cycle.
    c.model.remat = "none"
    c.model.scan_unroll = 1

    c.train = ml_collections.ConfigDict()
    c.train.seed = 0
    # Passes over the training groups; total_steps = epochs * examples / global_batch_size.
    c.train.epochs = 100000
    # Epochs per evaluation (the reference's eval_interval); epochs must be a multiple.
    c.train.eval_interval = 10000
    # Stop after this many optimizer steps even if epochs are left (0: no limit).
    c.train.max_steps = 0
    # Stop training after this many seconds of wall-clock time, then evaluate and save (0: no
    # limit). A run stopped this way ends at a machine-dependent step.
    c.train.time_budget_s = 0.0
    c.train.lr = 1e-4
    c.train.lr_min_ratio = 1.0
    # Where the cosine decay toward lr_min_ratio * lr ends. "steps" (the reference): at the
    # run's last step (epochs, capped by max_steps). "time_budget": at the step this machine
    # reaches when train.time_budget_s runs out, estimated from the measured step time at the
    # end of warm-up and re-estimated after each evaluation; training then stops there.
    c.train.lr_decay_end = "steps"
    c.train.lr_warmup_steps = 2000
    c.train.beta1 = 0.9
    c.train.beta2 = 0.95
    c.train.weight_decay = 0.1
    c.train.puzzle_emb_lr = 1e-2
    c.train.puzzle_emb_weight_decay = 0.1
    # Standard deviation of the puzzle-embedding rows at initialisation (0: zeros, the
    # reference); the blank row 0 stays zero either way.
    c.train.puzzle_emb_init_std = 0.0
    # Train only the puzzle-embedding rows: parameters, their optimizer state and EMA stay
    # bit-identical (test-time adaptation's --mode embedding, trm_jax.adapt).
    c.train.freeze_network = False
    # Exponential moving average of the parameters, used for evaluation when enabled.
    c.train.ema = False
    c.train.ema_rate = 0.999
    # carry: one optimizer step per supervision step, carry kept across batches (reference).
    # pseudocode: N_sup optimizer steps on each batch, carry detached between them (paper fig.).
    c.train.deep_supervision = "carry"
    # Print and log train metrics every this many steps.
    c.train.log_every = 50

    c.checkpoint = ml_collections.ConfigDict()
    # Save every this many steps (0: only at evaluations and at the end).
    c.checkpoint.every_steps = 0
    # Keep the latest N checkpoints, plus the best by the evaluation headline (ARC: pass@2,
    # otherwise exact accuracy).
    c.checkpoint.keep = 3
    c.checkpoint.keep_best = True

    c.mesh = ml_collections.ConfigDict()
    # Devices along the data axis (-1: all devices).
    c.mesh.data = -1

    c.distributed = ml_collections.ConfigDict()
    # Call jax.distributed.initialize (also triggered by --coordinator_address / env).
    c.distributed.enabled = False
    c.distributed.coordinator_address = ""
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    return c


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training settings as seen by the train step (static, hashable)."""

    seed: int
    epochs: int
    eval_interval: int
    max_steps: int
    time_budget_s: float
    lr: float
    lr_min_ratio: float
    lr_decay_end: str
    lr_warmup_steps: int
    beta1: float
    beta2: float
    weight_decay: float
    puzzle_emb_lr: float
    puzzle_emb_weight_decay: float
    ema: bool
    ema_rate: float
    deep_supervision: str
    log_every: int
    global_batch_size: int
    freeze_network: bool = False
    puzzle_emb_init_std: float = 0.0


class ConfigError(ValueError):
    """A configuration that cannot run."""


def train_config(c: ml_collections.ConfigDict) -> TrainConfig:
    t = c.train
    if t.deep_supervision not in DEEP_SUPERVISION:
        raise ConfigError(
            f"train.deep_supervision must be one of {DEEP_SUPERVISION}, got {t.deep_supervision!r}."
        )
    decay_end = t.get("lr_decay_end", "steps")
    if decay_end not in LR_DECAY_END:
        raise ConfigError(f"train.lr_decay_end must be one of {LR_DECAY_END}, got {decay_end!r}.")
    if decay_end == "time_budget" and not t.time_budget_s:
        raise ConfigError('train.lr_decay_end="time_budget" needs a positive train.time_budget_s.')
    if t.eval_interval <= 0 or t.epochs % t.eval_interval:
        raise ConfigError(
            f"train.epochs ({t.epochs}) must be a positive multiple of train.eval_interval "
            f"({t.eval_interval})."
        )
    if c.data.global_batch_size <= 0:
        raise ConfigError("data.global_batch_size must be positive.")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: t[k] for k in fields if k in t}
    kw["global_batch_size"] = int(c.data.global_batch_size)
    kw["lr_decay_end"] = decay_end
    return TrainConfig(**kw)


def model_config(c: ml_collections.ConfigDict, metadata) -> ModelConfig:
    """The model config for a dataset's metadata (vocab, seq_len, number of puzzle ids)."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    kw = {k: c.model[k] for k in c.model.keys() if k in fields}
    unknown = sorted(set(c.model.keys()) - fields)
    if unknown:
        raise ConfigError(f"Unknown model config keys: {', '.join(unknown)}.")
    kw.update(
        vocab_size=int(metadata.vocab_size),
        seq_len=int(metadata.seq_len),
        num_puzzle_identifiers=int(metadata.num_puzzle_identifiers),
    )
    kw["expansion"] = float(kw["expansion"])
    try:
        return ModelConfig(**kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from e


def to_json(c: ml_collections.ConfigDict) -> str:
    return json.dumps(c.to_dict(), indent=2, sort_keys=True)


def from_json(text: str, where: str = "config.json") -> ml_collections.ConfigDict:
    """A config written by :func:`to_json` (a work dir's ``config.json``); ConfigError (one
    sentence naming ``where``) when it is not one: not an object, a section that is not an
    object, a split name that is not a plain name."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{where} holds a {type(data).__name__}, not a trm_jax config object.")
    for section in ("data", "model", "train", "checkpoint"):
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(
                f"{where} has {section} = {data[section]!r}, not a section of settings; it was "
                "not written by trm_jax.train."
            )
    path = data.get("data", {}).get("path", "")
    if not isinstance(path, str):
        raise ConfigError(f"{where} has data.path {path!r}, not a path.")
    split = data.get("data", {}).get("eval_split", "test")
    if (
        not isinstance(split, str)
        or not split
        or split in (".", "..")
        or any(c in split for c in "/\\\0")
    ):
        raise ConfigError(f"{where} has data.eval_split {split!r}, which is not a plain name.")
    return ml_collections.ConfigDict(data)
