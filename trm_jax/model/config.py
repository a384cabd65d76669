"""The model's static configuration: one frozen dataclass shared by every architecture.

Paper <-> code names (reference-trm.md): answer ``y`` = ``z_H``, latent ``z`` = ``z_L``,
``T`` = ``H_cycles``, ``n`` = ``L_cycles``, ``N_sup`` = ``halt_max_steps``.

``arch`` selects the variant; each is the same layers, heads, losses and ACT step with a different
latent update rule (reference §3, §4):

* ``trm``          two latents (z_H, z_L), one shared net (``L_level``), last H cycle graded.
* ``trm_singlez``  one latent z_L; ``z_L = net(z_L + x)`` L times then ``z_L = net(z_L)``.
* ``trm_hier6``    z_H plus ``num_latents`` z_L states; every update reads their sum.
* ``hrm``          two nets (``L_level``, ``H_level``), one-step gradient, Q-continue target.
* ``transformer``  one deep stack (``H_level``, ``H_layers`` blocks), one pass per ACT step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from trm_jax import hardware

Arch = Literal["trm", "trm_singlez", "trm_hier6", "hrm", "transformer"]
ARCHS = ("trm", "trm_singlez", "trm_hier6", "hrm", "transformer")
POS_ENCODINGS = ("rope", "learned", "none")
DTYPES = ("bfloat16", "float32", "float64")
REMAT = ("none", "block", "full", "dots")
STORAGE = ("auto", "bfloat16", "float32")
LATENT_SUMS = ("sum", "mean")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every static setting of a model; hashable so it can be bound outside ``jit``."""

    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int = 1
    arch: Arch = "trm"
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    L_layers: int = 2
    H_layers: int = 0
    H_cycles: int = 3
    L_cycles: int = 6
    puzzle_emb_ndim: int = 512
    # 0 means ceil(puzzle_emb_ndim / hidden_size), as the reference.
    puzzle_emb_len: int = 16
    pos_encodings: str = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    mlp_t: bool = False
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    # True: halt when q_halt > 0 (TRM default); False: halt when q_halt > q_continue.
    no_ACT_continue: bool = True
    # Build the bootstrapped Q-continue target with a second forward (None: not no_ACT_continue).
    q_continue_target: bool | None = None
    # "bfloat16", "float32", "float64" or "auto" (resolved here, once, by
    # resolve_forward_dtype: the construct holds the chosen dtype, never "auto").
    forward_dtype: str = "bfloat16"
    # Dtype bf16 activations are held in between their rounding points (layers.Precision):
    # "auto" = float32 on CPUs (elementwise work in float32, faster there), bfloat16 on
    # accelerators (half the activation memory); "bfloat16" / "float32" force it.
    activation_storage: str = "auto"
    loss_type: str = "stablemax_cross_entropy"
    # trm_hier6: number of low-level latents (the reference hard-codes six).
    num_latents: int = 6
    # trm_hier6: what every update reads of the latents: "sum" (the reference) or "mean" (the
    # sum / num_latents, so the input embedding is not diluted; docs/ablation-cpu.md, Multi-z).
    latent_sum: str = "sum"
    # Rematerialisation of the graded cycle: none; each block; "full": each graded net
    # application keeps only its inputs; "dots": it keeps its matmul outputs and recomputes the
    # elementwise work (norms, activations) in the backward pass.
    remat: str = "none"
    # Unroll factor for the scans of the recursion (1 = rolled).
    scan_unroll: int = 1

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"model.arch must be one of {ARCHS}, got {self.arch!r}.")
        if self.pos_encodings not in POS_ENCODINGS:
            raise ValueError(
                f"model.pos_encodings must be one of {POS_ENCODINGS}, got {self.pos_encodings!r}."
            )
        if self.forward_dtype == "auto":
            object.__setattr__(self, "forward_dtype", resolve_forward_dtype("auto")[0])
        if self.forward_dtype not in DTYPES:
            raise ValueError(
                f"model.forward_dtype must be one of {DTYPES} or 'auto', "
                f"got {self.forward_dtype!r}."
            )
        if self.activation_storage not in STORAGE:
            raise ValueError(
                f"model.activation_storage must be one of {STORAGE}, "
                f"got {self.activation_storage!r}."
            )
        if self.latent_sum not in LATENT_SUMS:
            raise ValueError(
                f"model.latent_sum must be one of {LATENT_SUMS}, got {self.latent_sum!r}."
            )
        if self.remat not in REMAT:
            raise ValueError(f"model.remat must be one of {REMAT}, got {self.remat!r}.")
        if self.loss_type not in ("stablemax_cross_entropy", "softmax_cross_entropy"):
            raise ValueError(f"model.loss_type {self.loss_type!r} is not a known loss.")
        if self.puzzle_len * self.hidden_size < self.puzzle_emb_ndim:
            raise ValueError(
                f"model.puzzle_emb_len {self.puzzle_emb_len} x hidden_size {self.hidden_size} "
                f"cannot hold puzzle_emb_ndim {self.puzzle_emb_ndim} values."
            )
        if self.pos_encodings == "rope" and not self.mlp_t and self.head_dim % 2:
            raise ValueError(
                f"RoPE needs an even head width; hidden_size {self.hidden_size} / num_heads "
                f"{self.num_heads} gives {self.head_dim}."
            )
        if self.arch == "transformer" and self.pos_encodings == "none":
            raise ValueError("The transformer baseline needs pos_encodings 'rope' or 'learned'.")
        if self.arch == "trm_hier6" and self.L_cycles > self.num_latents:
            raise ValueError(
                f"trm_hier6 needs L_cycles <= num_latents ({self.num_latents}), "
                f"got {self.L_cycles}."
            )
        for name in ("H_cycles", "L_cycles", "halt_max_steps", "hidden_size", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}.")
        if self.num_layers_total < 1:
            raise ValueError("The model needs at least one layer (L_layers or H_layers).")

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def puzzle_len(self) -> int:
        """Number of prefix positions P that carry the puzzle embedding."""
        if self.puzzle_emb_ndim == 0:
            return 0
        if self.arch in ("hrm", "transformer") or self.puzzle_emb_len == 0:
            return -(-self.puzzle_emb_ndim // self.hidden_size)
        return self.puzzle_emb_len

    @property
    def total_len(self) -> int:
        """Sequence length inside the model, S = seq_len + P."""
        return self.seq_len + self.puzzle_len

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_layers_total(self) -> int:
        if self.arch == "hrm":
            return self.L_layers + self.H_layers
        if self.arch == "transformer":
            return self.H_layers
        return self.L_layers

    @property
    def latent_names(self) -> tuple[str, ...]:
        """Names of the carried latents; the first is the one the heads read."""
        if self.arch in ("trm", "hrm"):
            return ("z_H", "z_L")
        if self.arch == "trm_singlez":
            return ("z_L",)
        if self.arch == "trm_hier6":
            return ("z_H",) + tuple(f"z_L{i + 1}" for i in range(self.num_latents))
        return ("z_H",)

    @property
    def init_names(self) -> tuple[str, ...]:
        """Names of the fixed initial-state vectors, aligned with ``latent_names``."""
        return tuple(
            {"z_H": "H_init", "z_L": "L_init"}.get(n, n.replace("z_L", "L") + "_init")
            for n in self.latent_names
        )

    @property
    def uses_q_continue_target(self) -> bool:
        if self.arch == "transformer":
            return bool(self.q_continue_target)
        if self.arch == "hrm":
            return True if self.q_continue_target is None else self.q_continue_target
        if self.q_continue_target is None:
            return not self.no_ACT_continue
        return self.q_continue_target

    @property
    def halts_on_q_halt_only(self) -> bool:
        """Halting rule: q_halt > 0 (True) or q_halt > q_continue (False)."""
        if self.arch in ("hrm", "transformer"):
            return False
        return self.no_ACT_continue

    @property
    def net_applications(self) -> int:
        """Applications of a reasoning module per ACT step."""
        if self.arch == "transformer":
            return 1
        if self.arch == "hrm":
            return self.H_cycles * (self.L_cycles + 1)
        return self.H_cycles * (self.L_cycles + 1)

    @property
    def effective_depth(self) -> int:
        """Blocks applied per ACT step (the paper's effective depth)."""
        if self.arch == "transformer":
            return self.H_layers
        if self.arch == "hrm":
            return self.H_cycles * (self.L_cycles * self.L_layers + self.H_layers)
        return self.net_applications * self.L_layers

    def swiglu_width(self, n: int) -> int:
        """Inner width of a SwiGLU over ``n`` features: round(e*n*2/3) up to a multiple of 256."""
        inter = round(self.expansion * n * 2 / 3)
        return -(-inter // 256) * 256


def embed_scale(cfg: ModelConfig) -> float:
    return math.sqrt(cfg.hidden_size)


def resolve_forward_dtype(value: str, backend: str | None = None, units: str | None = None):
    """(dtype, reason) for a configured ``forward_dtype``; "auto" picks one for this machine.

    "auto": bfloat16 on GPUs and TPUs (bf16 operands with float32 accumulation are their native
    matmul path) and on CPUs with AMX-BF16 or AVX512-BF16; float32 on other CPUs. Call it to
    print the choice: ``dtype, why = resolve_forward_dtype(config.model.forward_dtype)``.
    ``backend`` (default JAX's) and ``units`` (default :func:`trm_jax.hardware.bf16_units`) are
    for tests.
    """
    if value != "auto":
        return value, "set in the config"
    backend = backend or hardware.platform()
    if backend != "cpu":
        return "bfloat16", f"auto: {backend} multiplies bf16 with float32 accumulation natively"
    units = units or hardware.bf16_units()
    if units == "amx_bf16":
        return "bfloat16", "auto: CPU has amx_bf16"
    if units == "avx512_bf16":
        # The faster main-job step on a 2-core Zen 5 EPYC, at the same held-out accuracy:
        # docs/main-job.md, "bf16 against float32"; docs/performance.md.
        return "bfloat16", "auto: CPU has avx512_bf16 (its bf16 dot kernels are the faster step)"
    return "float32", "auto: CPU has no bf16 matrix units (amx_bf16, avx512_bf16)"
