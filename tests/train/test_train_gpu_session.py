"""The GPU session's one command (MODEL_CARD.md), run on the CPU with a small budget and the tiny
preset: it trains by the budget, exports a float32-inference weight file that loads, and measures
the figures in the time left."""

import ast
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import REPO, subprocess_env

from mothernet_jax import gpu_session
from mothernet_jax.config import preset as model_preset
from mothernet_jax.pretrained import load_info, load_pretrained

BUDGET = 150.0  # the compiles (cold: 20-40 s on an idle 2-core machine, 50+ s under load) count, then steps
DEADLINE = BUDGET + 90.0
# the test prior of train_helpers, to compile faster
NARROW = ["prior.max_features=10", "prior.width_buckets=[32]", "prior.max_hidden=32", "prior.max_layers=4"]


def session(*args, device_count=1, timeout=300):
    argv = [sys.executable, "-m", "mothernet_jax.gpu_session", *args]
    env = subprocess_env(device_count)
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_session_runs_the_benchmarks_as_commands_and_never_imports_them():
    """The library never imports its benchmarks: the figures run `python -m ...benchmarks.train`."""
    source = (REPO / "mothernet_jax" / "gpu_session.py").read_text()
    imported = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported += [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            imported += [a.name for a in node.names]
    assert imported and not [name for name in imported if "benchmarks" in name]
    args = gpu_session._parser().parse_args(["--out", "o", "--bench-presets", "paper", "--bench-steps", "3"])
    figures = list(gpu_session._figures(args, Path("w"), Path("c"), deadline=0.0))
    assert [name for name, _, _ in figures] == ["train_small_as_trained", "train_paper", "generate_paper_1000x100"]


def test_a_bad_setting_stops_the_session_at_once_in_one_line(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "out"), "--allow-cpu", "--set", "learning_rat=1"]
    assert gpu_session.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_session: unknown setting 'learning_rat'") and "\n" not in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_without_a_gpu_it_stops_at_once_saying_so(tmp_path):
    """Before any training: exit code 2, the reason in one line, nothing written (no clock read:
    the empty output folder shows it stopped before the run)."""
    done = session("--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "run"), timeout=300)
    assert done.returncode == 2
    assert re.search(r"gpu_session: no GPU: JAX's backend is cpu .* trains on a GPU", done.stderr)
    assert not list((tmp_path / "out").iterdir()) and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_session_on_the_cpu_trains_by_its_budget_exports_and_measures(tmp_path):
    out = tmp_path / "out"
    args = ["--out", str(out), "--allow-cpu", "--preset", "tiny", "--budget", str(BUDGET)]
    args += ["--deadline", str(DEADLINE), "--workdir", str(tmp_path / "run"), "--bench-presets"]
    args += ["--generate-presets", "tiny", *(f"--set={s}" for s in NARROW)]
    args += ["--set=steps=1000000"]  # the budget ends the run, not the tiny preset's 500 steps on a fast machine
    args += ["--set=read_out=generated"]  # a --set wins over RECIPE's (and the step compiles faster)
    began = time.monotonic()
    done = session(*args)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "figures.json",
        "metrics.jsonl",
        "tiny.json",
        "tiny.msgpack",
    ]
    # the export: trained in bf16 by the recipe, a float32 inference config, and it loads
    params, model = load_pretrained(out / "tiny.msgpack")
    assert model == model_preset("tiny") and model.dtype == "float32"
    info = load_info(out / "tiny.msgpack")
    assert info["storage_dtype"] == "bfloat16" and info["stop_reason"] == "budget" and info["steps"] >= 1
    trained = info["history"][-1]["train_config"]
    assert trained["model"]["dtype"] == "bfloat16" and trained["budget_s"] == BUDGET
    assert trained["prior"]["two_class_probability"] == 0.5 and trained["seed"] == 14  # RECIPE's
    assert trained["read_out"] == "generated" and "read_out=ridge" in gpu_session.RECIPE  # the --set over RECIPE's
    # trained by its budget; the figures in the time left, by benchmarks.train in a subprocess
    report = json.loads((out / "figures.json").read_text())
    training = report["training"]
    assert training["stop_reason"] == "budget" and training["budget_spent_s"] <= BUDGET + 2.0
    figures = report["figures"]
    as_trained = figures["train_tiny_as_trained"]
    assert as_trained["datasets_per_s"] > 0 and as_trained["prior_datasets_per_s"] > 0
    assert (as_trained["batch_size"], as_trained["dtype"], as_trained["split"]) == (8, "bfloat16", "random")
    assert figures["generate_tiny_1000x100"]["median_ms"] > 0 and report["skipped"] == {}
    assert took <= DEADLINE + 30.0  # the last figure starts before the deadline
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()][
        -1
    ] == info["steps"]
