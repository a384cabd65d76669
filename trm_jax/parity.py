"""python -m trm_jax.parity GOLDEN_DIR [GOLDEN_DIR ...]

Replays the steps recorded from the official PyTorch implementation in a golden folder
(``config.json``, ``state_dict.npz`` or ``.pt``, ``golden.npz``; format in each folder's README)
and compares every recorded quantity with ours, teacher-forced: each step starts from the
recorded carry of the step before, because the recursion amplifies float32 rounding a
hundredfold or more per step. Prints a table of max errors next to the folder's tolerances and
exits 0 only if every quantity is within them (1 otherwise, 2 for unreadable input).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from trm_jax.act import (
    Carry,
    act_forward,
    gather_puzzle_rows,
    initial_carry,
    reset_carry,
    step_loss,
)
from trm_jax.model.config import ModelConfig
from trm_jax.model.trm import TRMModel
from trm_jax.reference_import import (
    CheckpointImportError,
    expected_layout,
    import_state_dict,
    read_state_dict,
)

_ARCH_BY_CLASS = {
    "trm": "trm",
    "trm_singlez": "trm_singlez",
    "trm_hier6": "trm_hier6",
    "hrm": "hrm",
    "transformers_baseline": "transformer",
}

_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


class GoldenError(ValueError):
    """A golden folder that cannot be read."""


def config_from_reference(model_class: str, model_config: dict) -> ModelConfig:
    """Build our ModelConfig from a reference class path and its config dict."""
    module = model_class.split(".")[-2] if "." in model_class else model_class
    if module not in _ARCH_BY_CLASS:
        raise GoldenError(f"Unknown reference model class {model_class!r}.")
    arch = _ARCH_BY_CLASS[module]
    kw = {k: v for k, v in model_config.items() if k in _FIELDS}
    kw["arch"] = arch
    if arch == "transformer":
        kw.setdefault("no_ACT_continue", False)
        kw.setdefault("q_continue_target", False)
        kw["L_layers"] = 0
        kw["L_cycles"] = 1
        kw["H_cycles"] = 1
    if arch in ("hrm", "transformer"):
        kw["puzzle_emb_len"] = 0
    kw.setdefault("puzzle_emb_len", 0 if arch in ("hrm", "transformer") else 16)
    kw["expansion"] = float(kw.get("expansion", 4.0))
    return ModelConfig(**kw)


@dataclasses.dataclass
class Row:
    record: str
    quantity: str
    error: float
    tolerance: float
    kind: str  # "abs", "rel", "grad", "exact"

    @property
    def ok(self) -> bool:
        if self.kind == "exact":
            return self.error == 0
        return bool(self.error <= self.tolerance)


def _load_golden(folder: str):
    cfg_path = os.path.join(folder, "config.json")
    gold_path = os.path.join(folder, "golden.npz")
    for p in (cfg_path, gold_path):
        if not os.path.exists(p):
            raise GoldenError(f"Golden folder {folder} has no {os.path.basename(p)}.")
    try:
        with open(cfg_path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise GoldenError(f"{cfg_path} is not valid JSON ({e}).") from e
    for key in ("model_class", "model_config", "tolerances"):
        if key not in meta:
            raise GoldenError(f"{cfg_path} has no {key!r} entry.")
    npz = os.path.join(folder, "state_dict.npz")
    pt = os.path.join(folder, "state_dict.pt")
    sd_path = npz if os.path.exists(npz) else pt
    state_dict = read_state_dict(sd_path)
    try:
        with np.load(gold_path, allow_pickle=False) as g:
            gold = {k: np.asarray(g[k]) for k in g.files}
    except ValueError as e:  # object arrays (pickles) are refused: they would run code
        if "allow_pickle" not in str(e):
            raise GoldenError(f"{gold_path} is not a readable .npz file ({e}).") from None
        raise GoldenError(
            f"{gold_path} holds object arrays (pickled Python objects), which are refused; "
            "golden records must be numeric arrays."
        ) from None
    except (OSError, zipfile.BadZipFile) as e:
        raise GoldenError(f"{gold_path} is not a readable .npz file ({e}).") from None
    return meta, state_dict, sd_path, gold


def _batch(gold, prefix):
    return {
        k: jnp.asarray(gold[f"{prefix}/{k}"]) for k in ("inputs", "labels", "puzzle_identifiers")
    }


class _Checker:
    def __init__(self, tol: dict):
        self.tol = tol
        self.rows: list[Row] = []

    def abs(self, record, name, ours, ref, step0=False):
        err = float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64))))
        tol = self.tol["abs_float_step0"] if step0 else self.tol["abs_float"]
        self.rows.append(Row(record, name, err, tol, "abs"))

    def rel(self, record, name, ours, ref):
        ref = float(ref)
        err = abs(float(ours) - ref) / max(abs(ref), 1e-12)
        self.rows.append(Row(record, name, err, self.tol["loss_rel"], "rel"))

    def grad(self, record, name, ours, ref):
        ref = np.asarray(ref, np.float64)
        scale = float(np.max(np.abs(ref)))
        err = float(np.max(np.abs(np.asarray(ours, np.float64) - ref)))
        err = err / scale if scale > 0 else err
        self.rows.append(Row(record, name, err, self.tol["grad_rel_to_max"], "grad"))

    def exact(self, record, name, ours, ref):
        ours, ref = np.asarray(ours), np.asarray(ref)
        bad = (
            int(np.sum(ours.astype(np.int64) != ref.astype(np.int64)))
            if ours.shape == ref.shape
            else -1
        )
        self.rows.append(Row(record, name, float(abs(bad)) if bad else 0.0, 0, "exact"))


def _compare_step(chk, cfg, gold, prefix, new_carry, outputs, loss, metrics, preds, step0):
    names = cfg.latent_names
    for name, z in zip(names, new_carry.z):
        chk.abs(prefix, name, z, gold[f"{prefix}/{name}"], step0)
    chk.abs(prefix, "logits", outputs["logits"], gold[f"{prefix}/logits"], step0)
    for q in ("q_halt_logits", "q_continue_logits"):
        chk.abs(prefix, q, outputs[q], gold[f"{prefix}/{q}"], step0)
    if f"{prefix}/target_q_continue" in gold:
        if "target_q_continue" not in outputs:
            chk.rows.append(Row(prefix, "target_q_continue (not produced)", 1.0, 0, "exact"))
        else:
            chk.abs(
                prefix,
                "target_q_continue",
                outputs["target_q_continue"],
                gold[f"{prefix}/target_q_continue"],
                step0,
            )
    chk.exact(prefix, "preds", preds, gold[f"{prefix}/preds"])
    chk.exact(prefix, "halted", new_carry.halted, gold[f"{prefix}/halted"])
    chk.exact(prefix, "steps", new_carry.steps, gold[f"{prefix}/steps"])
    if f"{prefix}/all_finish" in gold:
        chk.exact(prefix, "all_finish", jnp.all(new_carry.halted), gold[f"{prefix}/all_finish"])
    chk.rel(prefix, "loss", loss, gold[f"{prefix}/loss"])
    for key in sorted(k for k in gold if k.startswith(prefix + "/metrics/")):
        m = key.rsplit("/", 1)[1]
        if m not in metrics:
            chk.rows.append(Row(prefix, f"metrics/{m} (not produced)", 1.0, 0, "exact"))
        elif gold[key].dtype.kind in "iub":
            chk.exact(prefix, f"metrics/{m}", metrics[m], gold[key])
        else:
            chk.rel(prefix, f"metrics/{m}", metrics[m], gold[key])


def run_parity(folder: str) -> tuple[list[Row], ModelConfig]:
    """Replay a golden folder; returns the comparison rows and the model config."""
    meta, state_dict, sd_path, gold = _load_golden(folder)
    cfg = config_from_reference(meta["model_class"], meta["model_config"])
    if meta["model_config"].get("forward_dtype", "float32") != "float32":
        raise GoldenError(f"{folder}: parity replays float32 recordings only.")
    variables, table = import_state_dict(cfg, state_dict, source=sd_path)
    variables = jax.tree.map(jnp.asarray, variables)
    table = None if table is None else jnp.asarray(table)
    model = TRMModel(cfg)
    tol = meta["tolerances"]
    chk = _Checker(tol)
    global_batch = int(meta.get("global_batch_size", meta["model_config"]["batch_size"]))
    batch_a = _batch(gold, "batch")

    # Input embeddings (recorded for batch A in eval mode).
    if "eval/input_embeddings" in gold:
        rows = gather_puzzle_rows(model, table, batch_a["puzzle_identifiers"])
        x = model.apply(variables, batch_a["inputs"], rows, method=TRMModel.embed)
        chk.abs("eval", "input_embeddings", x, gold["eval/input_embeddings"], True)

    @jax.jit
    def eval_step(carry, batch):
        carry = reset_carry(model, variables, carry, batch)
        rows = gather_puzzle_rows(model, table, carry.current_data["puzzle_identifiers"])
        new_carry, out = act_forward(model, variables, rows, carry, None, False)
        loss, metrics, preds = step_loss(model, new_carry, out)
        return new_carry, out, loss, metrics, preds

    n_eval = len({k.split("/")[1] for k in gold if k.startswith("eval/step")})
    B = batch_a["inputs"].shape[0]
    for k in range(n_eval):
        if k == 0:
            carry = initial_carry(model, batch_a)
        else:
            carry = Carry(
                z=tuple(jnp.asarray(gold[f"eval/step{k - 1}/{n}"]) for n in cfg.latent_names),
                steps=jnp.full((B,), k, jnp.int32),
                halted=jnp.zeros((B,), bool),
                current_data=dict(batch_a),
            )
        res = eval_step(carry, batch_a)
        _compare_step(chk, cfg, gold, f"eval/step{k}", *res, step0=(k == 0))

    # Training steps: gradients of loss / global_batch w.r.t. params and the gathered rows.
    layout = expected_layout(cfg)

    @jax.jit
    def train_step(carry, batch):
        carry = reset_carry(model, variables, carry, batch)
        rows = gather_puzzle_rows(model, table, carry.current_data["puzzle_identifiers"])

        def f(params, rows):
            v = {"params": params, "constants": variables["constants"]}
            new_carry, out = act_forward(model, v, rows, carry, jax.random.key(0), True)
            loss, metrics, preds = step_loss(model, new_carry, out)
            return loss / global_batch, (new_carry, out, loss, metrics, preds)

        (_, aux), (g_params, g_rows) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
            variables["params"], rows
        )
        return aux, g_params, g_rows, rows

    n_train = len({k.split("/")[1] for k in gold if k.startswith("train/step")})
    carry = initial_carry(model, batch_a)
    for k in range(n_train):
        prefix = f"train/step{k}"
        batch = batch_a if k == 0 else _batch(gold, "batch_b")
        if k > 0:
            prev = f"train/step{k - 1}"
            carry = Carry(
                z=tuple(jnp.asarray(gold[f"{prev}/{n}"]) for n in cfg.latent_names),
                steps=jnp.asarray(gold[f"{prev}/steps"]),
                halted=jnp.asarray(gold[f"{prev}/halted"]),
                current_data=_batch(gold, f"{prev}/current_data"),
            )
        aux, g_params, g_rows, rows = train_step(carry, batch)
        new_carry = aux[0]
        _compare_step(chk, cfg, gold, prefix, *aux, step0=(k == 0))
        for key in ("inputs", "labels", "puzzle_identifiers"):
            chk.exact(
                prefix,
                f"current_data/{key}",
                new_carry.current_data[key],
                gold[f"{prefix}/current_data/{key}"],
            )
        for name, (coll, path, transpose, _) in layout.items():
            gkey = f"{prefix}/grad/_orig_mod.model.inner.{name}"
            if coll != "params":
                continue
            if gkey not in gold:
                chk.rows.append(Row(prefix, f"grad/{name} (not recorded)", 1.0, 0, "exact"))
                continue
            node = g_params
            for p in path:
                node = node[p]
            ours = np.asarray(node).T if transpose else np.asarray(node)
            chk.grad(prefix, f"grad/{name}", ours, gold[gkey])
        if cfg.puzzle_len and f"{prefix}/grad_puzzle_emb_local_weights" in gold:
            chk.grad(
                prefix,
                "grad/puzzle_emb_local_weights",
                g_rows,
                gold[f"{prefix}/grad_puzzle_emb_local_weights"],
            )
            chk.abs(
                prefix,
                "puzzle_emb_local_weights",
                rows,
                gold[f"{prefix}/puzzle_emb_local_weights"],
                True,
            )
        carry = new_carry
    return chk.rows, cfg


def format_table(folder: str, rows: list[Row]) -> str:
    lines = [
        f"== {folder}",
        f"{'record':<14} {'quantity':<52} {'max error':>11} {'tolerance':>11}  ok",
    ]
    for r in rows:
        tol = "exact" if r.kind == "exact" else f"{r.tolerance:.1e}"
        err = f"{int(r.error)}" if r.kind == "exact" else f"{r.error:.2e}"
        lines.append(
            f"{r.record:<14} {r.quantity:<52} {err:>11} {tol:>11}  {'ok' if r.ok else 'FAIL'}"
        )
    bad = sum(not r.ok for r in rows)
    lines.append(f"{len(rows) - bad} passed, {bad} failed")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trm_jax.parity",
        description="Compare trm_jax with outputs recorded from the official PyTorch code.",
    )
    parser.add_argument("folders", nargs="+", help="golden folders (config.json, golden.npz, ...)")
    parser.add_argument("--quiet", action="store_true", help="print only failures and totals")
    args = parser.parse_args(argv)
    status = 0
    for folder in args.folders:
        try:
            rows, _ = run_parity(folder)
        except (GoldenError, CheckpointImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyError as e:
            print(f"error: {folder}/golden.npz lacks the record {e}.", file=sys.stderr)
            return 2
        if args.quiet:
            rows_to_show = [r for r in rows if not r.ok]
            print(format_table(folder, rows_to_show).rsplit("\n", 1)[0])
            bad = sum(not r.ok for r in rows)
            print(f"{len(rows) - bad} passed, {bad} failed")
        else:
            print(format_table(folder, rows))
        if any(not r.ok for r in rows):
            status = 1
        if any(math.isnan(r.error) for r in rows):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
