"""Cross-entropies and the ACT loss head (reference §3.9).

Labels use the ignore id -100. The reference computes stablemax in float64; we do the same when
``jax_enable_x64`` is on and otherwise in float32 (relative difference ~1e-7 per token).

Shape letters: B batch, L sequence, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IGNORE_LABEL_ID = -100


def _wide_float():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _stablemax_s(x: jax.Array) -> jax.Array:
    # s(x) = 1/(1 - x) for x < 0, x + 1 otherwise; each branch sees only its own domain so the
    # unused branch never produces inf (which would turn gradients into NaN through `where`).
    neg = jnp.minimum(x, 0.0)
    pos = jnp.maximum(x, 0.0)
    return jnp.where(x < 0, 1.0 / (1.0 - neg + 1e-30), pos + 1.0)


def log_stablemax(logits: jax.Array, axis: int = -1) -> jax.Array:
    s = _stablemax_s(logits)
    return jnp.log(s / jnp.sum(s, axis=axis, keepdims=True))


def stablemax_cross_entropy(
    logits_BxLxV: jax.Array, labels_BxL: jax.Array, ignore_index: int = IGNORE_LABEL_ID
) -> jax.Array:
    """Per-token -log stablemax(label), 0 where the label is ignored; wide float."""
    logp = log_stablemax(logits_BxLxV.astype(_wide_float()))
    return _pick_nll(logp, labels_BxL, ignore_index)


def softmax_cross_entropy(
    logits_BxLxV: jax.Array, labels_BxL: jax.Array, ignore_index: int = IGNORE_LABEL_ID
) -> jax.Array:
    """Per-token softmax cross-entropy, 0 where the label is ignored (float32)."""
    logp = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    return _pick_nll(logp, labels_BxL, ignore_index)


def _pick_nll(logp_BxLxV, labels_BxL, ignore_index):
    valid = labels_BxL != ignore_index
    safe = jnp.where(valid, labels_BxL, 0)
    picked = jnp.take_along_axis(logp_BxLxV, safe[..., None], axis=-1)[..., 0]
    return jnp.where(valid, -picked, 0.0)


def binary_cross_entropy_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Elementwise BCE with logits, numerically stable (float32)."""
    x = logits.astype(jnp.float32)
    t = targets.astype(jnp.float32)
    return jnp.maximum(x, 0.0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x)))


def act_loss(
    logits_BxLxV: jax.Array,
    labels_BxL: jax.Array,
    q_halt_B: jax.Array,
    q_continue_B: jax.Array,
    halted_B: jax.Array,
    steps_B: jax.Array,
    target_q_continue_B: jax.Array | None = None,
    loss_type: str = "stablemax_cross_entropy",
):
    """The reference ACTLossHead: returns (total loss summed over rows, metric sums, preds).

    lm_loss = sum over rows of the mean token loss over valid tokens; q_halt_loss = sum of the
    BCE of q_halt against the row's exact correctness; total = lm_loss + 0.5 * (q_halt_loss
    + q_continue_loss). Metrics are raw sums over rows with ``halted & count > 0``.
    """
    ce = (
        stablemax_cross_entropy if loss_type == "stablemax_cross_entropy" else softmax_cross_entropy
    )
    mask_BxL = labels_BxL != IGNORE_LABEL_ID
    count_B = jnp.sum(mask_BxL, axis=-1)
    div_B = jnp.maximum(count_B, 1)
    preds_BxL = jnp.argmax(logits_BxLxV, axis=-1).astype(jnp.int32)
    correct_BxL = mask_BxL & (preds_BxL == labels_BxL)
    seq_correct_B = jnp.sum(correct_BxL, axis=-1) == count_B

    tok_loss_BxL = ce(logits_BxLxV, labels_BxL)
    lm_loss = jnp.sum(tok_loss_BxL / div_B[:, None].astype(tok_loss_BxL.dtype))
    q_halt_loss = jnp.sum(binary_cross_entropy_with_logits(q_halt_B, seq_correct_B))
    total = lm_loss + 0.5 * q_halt_loss.astype(lm_loss.dtype)

    valid_B = halted_B & (count_B > 0)
    metrics = {
        "count": jnp.sum(valid_B).astype(jnp.int32),
        "accuracy": jnp.sum(
            jnp.where(valid_B, jnp.sum(correct_BxL, -1) / div_B.astype(jnp.float32), 0.0)
        ),
        "exact_accuracy": jnp.sum(valid_B & seq_correct_B).astype(jnp.int32),
        "q_halt_accuracy": jnp.sum(valid_B & ((q_halt_B >= 0) == seq_correct_B)).astype(jnp.int32),
        "steps": jnp.sum(jnp.where(valid_B, steps_B, 0)).astype(jnp.int32),
        "lm_loss": jax.lax.stop_gradient(lm_loss),
        "q_halt_loss": jax.lax.stop_gradient(q_halt_loss),
    }
    if target_q_continue_B is not None:
        q_continue_loss = jnp.sum(
            binary_cross_entropy_with_logits(q_continue_B, target_q_continue_B)
        )
        total = total + 0.5 * q_continue_loss.astype(total.dtype)
        metrics["q_continue_loss"] = jax.lax.stop_gradient(q_continue_loss)
    return total, metrics, preds_BxL
