"""The training-curve figures: loss curves of phases, validation curves of compared runs, and the
ablation table at matched compute."""

import json

import pytest

from mothernet_jax.benchmarks import ablation, loss_curve


def _workdir(path, losses, vals, per_step=8):
    path.mkdir()
    lines = [{"step": 10 * (i + 1), "loss": v, "datasets_per_step": per_step, "elapsed_s": 5.0 * (i + 1)}
             for i, v in enumerate(losses)]  # fmt: skip
    lines += [{"step": s, "datasets": s * per_step, "seconds": s / 2, "cpu_seconds": s, "val_auc": a}
              for s, a in vals]  # fmt: skip
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_loss_curve_draws_validation_per_run_when_compared(tmp_path, capsys):
    a = _workdir(tmp_path / "a", [1.0, 0.8, 0.7], [(0, 0.5), (20, 0.6), (30, 0.7)])
    b = _workdir(tmp_path / "b", [1.0, 0.9, 0.85], [(0, 0.5), (30, 0.62)])
    out = tmp_path / "fig" / "curve.png"
    loss_curve.main(["--compare", "--workdir", a, b, "--out", str(out)])
    printed = capsys.readouterr().out
    assert out.exists() and (tmp_path / "fig" / "curve_val.png").exists()
    assert "last val_auc 0.7000" in printed and "last val_auc 0.6200" in printed
    assert "total:" not in printed  # compared runs are not phases of one run
    runs = loss_curve.read_runs([a, b])
    assert loss_curve.offsets(runs, compare=True) == [0, 0]
    assert loss_curve.offsets(runs, compare=False) == [0, 240]
    assert [len(r["metrics"]) for r in runs] == [3, 3]  # validation lines are not losses


def test_ablation_table_compares_at_matched_cpu_seconds(tmp_path):
    runs = {
        "slow": [{"datasets": 0, "cpu_seconds": 0.0, "val_auc": 0.5},
                 {"datasets": 80, "cpu_seconds": 100.0, "val_auc": 0.7, "val_gap": 0.015}],
        "fast": [{"datasets": 0, "cpu_seconds": 0.0, "val_auc": 0.5}, {"datasets": 80, "cpu_seconds": 50.0, "val_auc": 0.6}],
    }  # fmt: skip
    text = ablation.table(runs)
    assert "val_auc at 50 CPU s" in text
    slow = next(line for line in text.splitlines() if line.startswith("| slow"))
    assert "| 0.7000 | +0.0150 | 0.6000 |" in slow  # final 0.7 (the gap to the control), 0.6 at 50 CPU s
    assert "| 0.6000 | - | 0.6000 |" in next(line for line in text.splitlines() if line.startswith("| fast"))
    assert ablation.parse_variant("muon:optimizer=muon,learning_rate=1e-3") == (
        "muon",
        ["optimizer=muon", "learning_rate=1e-3"],
    )
    assert ablation.parse_variant("base:") == ("base", [])
    with pytest.raises(ValueError, match="name:key=value"):
        ablation.parse_variant("nocolon")
    assert ablation.plot(runs, tmp_path / "a.png").exists()
