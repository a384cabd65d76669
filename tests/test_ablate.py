"""scripts/ablate.py: a tiny two-variant run (table, chart, cached rerun) and the dry-run plan."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

from trm_jax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ablate.py"
TINY = ["--hidden", "32", "--cycles", "1,1", "--halt-max-steps", "2", "--batch", "8"]
TINY += ["--budget-steps", "3", "--num-train", "16", "--num-test", "16"]
# Paper sizes (reference §7): parameters and effective depth per supervision step.
PAPER = ["--hidden", "512", "--heads", "8", "--cycles", "3,6", "--batch", "768"]
PAPER += ["--lr", "1e-4", "--ema"]
PAPER_PLAN = {
    "trm-mlp": (5_028_866, 42),
    "trm-att": (6_828_034, 42),
    "hrm": (27_275_266, 24),
    "single-z": (5_028_866, 42),
    "multi-z": (5_028_866, 42),
    "multi-z-mean": (5_028_866, 42),
    "4-layers": (10_045_442, 48),
    "transformer": (27_144_194, 8),
    "pseudocode-act": (5_028_866, 42),
}


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    argv = ["--variants", "trm-mlp,pseudocode-act", "--data", str(root / "data")]
    argv += ["--out", str(root / "out"), "--quiet"] + TINY
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "argv": argv, "stdout": proc.stdout}


def _rows(markdown: str) -> dict:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("variant", "---"):
            rows[cells[0]] = cells
    return rows


def test_tiny_run_writes_a_table_row_and_bars_per_variant(tiny_run):
    out = tiny_run["root"] / "out"
    assert (tiny_run["root"] / "data" / "test").is_dir(), "the dataset is built when missing"
    rows = _rows((out / "ablation.md").read_text())
    assert set(rows) == {"trm-mlp", "pseudocode-act"}
    assert rows["trm-mlp"][:5] == ["trm-mlp", "trm", "347,906", "4", "3"]
    # 3 updates of budget at N_sup 2: one batch of up to two updates.
    assert rows["pseudocode-act"][4].endswith("(1 batch(es))")
    assert all(c.endswith("%") for c in rows["trm-mlp"][6:8])
    assert rows["trm-mlp"][8] == "2.00 / 2"  # q_halt starts at -5: nothing halts early yet
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "ablation.json").read_text())["results"]
    assert [r["variant"] for r in results] == ["trm-mlp", "pseudocode-act"]
    for r in results:
        assert r["eval_examples"] == 16 and r["fixed"]["count"] == 16
        assert 0 <= r["fixed"]["exact_accuracy"] <= r["fixed"]["accuracy"] <= 1
        assert 1 <= r["adaptive"]["steps"] <= 2
        assert (out / r["variant"] / "run" / "checkpoints").is_dir()
    assert results[0]["updates"] == 3 and results[0]["batches"] == 3
    assert results[1]["batches"] == 1 and 1 <= results[1]["updates"] <= 2
    assert "Table:" in tiny_run["stdout"]


def test_rerun_reuses_finished_results_and_refuses_other_settings(tiny_run, ablate, capsys):
    out = tiny_run["root"] / "out"
    before = (out / "trm-mlp" / "result.json").stat().st_mtime_ns
    assert ablate.main(tiny_run["argv"]) == 0
    text = capsys.readouterr().out
    assert text.count("cached result") == 2
    assert (out / "trm-mlp" / "result.json").stat().st_mtime_ns == before
    other = [a if a != "32" else "64" for a in tiny_run["argv"]]
    assert ablate.main(other) == 2
    assert "belongs to other settings" in capsys.readouterr().err


def test_dry_run_plans_every_variant_at_paper_size(ablate, tmp_path, capsys):
    data = tmp_path / "missing"
    assert ablate.main(["--dry-run", "--data", str(data), *PAPER]) == 0
    text = capsys.readouterr().out
    assert not data.exists(), "a dry run builds nothing"
    for name, (params, depth) in PAPER_PLAN.items():
        line = next(x for x in text.splitlines() if x.startswith(name + " "))
        assert f"{params:,}" in line.split() and str(depth) in line.split(), line
    assert "18 batch(es) x <= 16 updates" in text  # pseudocode: 300 updates / N_sup 16


def test_paper_size_plan_matches_the_config_files(ablate, tmp_path):
    """The same flags at paper size give exactly the model of each variant's config file."""
    args = ablate.build_parser().parse_args(["--data", str(tmp_path), *PAPER])
    ablate.check_args(args)
    meta = ablate._Shapes()
    files = dict(ablate.VARIANT_FILES, **{"trm-mlp": "sudoku_mlp.py", "trm-att": "sudoku_att.py"})
    for entry in ablate.plan(args, meta):
        want = ablate._config_module(files[entry["variant"]]).get_config()
        got = entry["config"]
        assert entry["model"] == config_lib.model_config(want, meta), entry["variant"]
        for k in ("lr", "weight_decay", "puzzle_emb_weight_decay", "ema", "deep_supervision"):
            assert got.train[k] == want.train[k], (entry["variant"], k)


def test_unknown_variant_is_one_line_and_status_2(ablate, capsys):
    assert ablate.main(["--variants", "trm-mlp,nope", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown variant(s) nope") and err.count("\n") == 1


def test_table_ranks_by_exact_then_token_accuracy(ablate):
    def rec(name, exact, token, error=None):
        fixed = None if error else {"exact_accuracy": exact, "accuracy": token}
        adaptive = None if error else {"exact_accuracy": exact, "steps": 16.0}
        return {
            "variant": name, "arch": "trm", "params": 1, "effective_depth": 1, "batches": 5,
            "updates": None if error else 5, "train_seconds": 60.0, "fixed": fixed,
            "adaptive": adaptive, "error": error,
        }  # fmt: skip

    records = [
        rec("a", 0.10, 0.90),
        rec("b", 0.50, 0.70),
        rec("broken", 0, 0, error="nan"),
        rec("c", 0.50, 0.80),
    ]
    table = ablate.markdown_table(records, 16)
    order = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert order == ["c", "b", "a", "broken"]
    assert list(_rows(table)["c"][6:8]) == ["50.0%", "80.0%"]  # exact, then token accuracy


def test_budget_s_fits_the_decay_to_each_variants_clock(ablate):
    args = ablate.build_parser().parse_args(["--budget-s", "300"] + TINY[:-6])
    ablate.check_args(args)
    c = ablate.finalize(ablate.variant_config(args, "trm-mlp"), 20_000, ablate._Shapes(), args)
    assert (c.train.time_budget_s, c.train.lr_decay_end) == (300.0, "time_budget")
    assert (c.train.lr_min_ratio, c.train.lr_warmup_steps) == (0.1, 30)
    assert ablate.settings_key(c, args)["budget"] == {"seconds": 300.0, "lr_min_ratio": 0.1}
    config_lib.train_config(c)  # a valid training config
    steps = ablate.build_parser().parse_args(["--budget-steps", "300"] + TINY[:-6])
    c = ablate.finalize(ablate.variant_config(steps, "trm-mlp"), 300, ablate._Shapes(), steps)
    assert (c.train.lr_decay_end, c.train.max_steps, c.train.lr_warmup_steps) == ("steps", 300, 30)
    with pytest.raises(SystemExit):  # one budget at a time
        ablate.build_parser().parse_args(["--budget-s", "30", "--budget-steps", "3"])
