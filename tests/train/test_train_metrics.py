"""What a run reports: metric lines measured by name, the step log's checks and window, the bar."""

import io
import json
import math

import numpy as np
import pytest
from train_helpers import make_config

from mothernet_jax.train import metrics as metrics_module
from mothernet_jax.train.budget import BudgetClock
from mothernet_jax.train.metrics import MetricWriter, NonFiniteLossError, StepLog, read_metrics


class Bar:
    def __init__(self):
        self.updates = []

    def update(self, n=1, **fields):
        self.updates.append(fields)


def step_metrics(loss, grad_norm=1.0, valid_fraction=1.0):
    return {"loss": np.float32(loss), "grad_norm": np.float32(grad_norm), "learning_rate": np.float32(1e-3),
            "valid_fraction": np.float32(valid_fraction)}  # fmt: skip


def test_a_metric_is_measured_by_name_and_written_as_one_line(tmp_path):
    writer = MetricWriter(tmp_path / "metrics.jsonl", wall=lambda: 123.0)
    writer.measure("val_auc", 0.75)
    writer.measure("datasets", 80)
    writer.write(10)
    writer.write(11)  # nothing measured since: the step and the time alone
    assert read_metrics(tmp_path) == [
        {"step": 10, "val_auc": 0.75, "datasets": 80, "time": 123.0},
        {"step": 11, "time": 123.0},
    ]
    MetricWriter(None).write(1)  # no file (a process other than 0): nothing written, no error


def test_the_step_log_reads_one_step_late_averages_its_window_and_stops_at_a_non_finite_loss(tmp_path):
    now = [0.0]
    budget = BudgetClock(clock=lambda: now[0])
    config = make_config(log_every=2)
    bar = Bar()
    log = StepLog(config, 0, 5, MetricWriter(tmp_path / "metrics.jsonl"), bar, budget)
    for step, (loss, valid) in enumerate([(2.0, 1.0), (1.0, 0.0), (4.0, 1.0), (3.0, 1.0)]):
        log.queue(step, step_metrics(loss, valid_fraction=valid), step / 5)
        now[0] += 0.5
        assert log.read_until == step  # the step before was read, not this one
    log.flush()
    assert log.losses[:1] == [2.0] and math.isnan(log.losses[1]) and log.losses[2:] == [4.0, 3.0]
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines] == [2, 4]
    # the mean over the steps with a valid dataset: none in step 1's window but step 0
    assert (lines[0]["loss"], lines[0]["loss_steps"], lines[1]["loss"], lines[1]["loss_steps"]) == (2.0, 1, 3.5, 2)
    assert lines[1]["datasets_per_step"] == 8 and lines[1]["schedule_progress"] == 0.6
    assert lines[1]["seconds_per_step"] == pytest.approx(0.5) and lines[1]["datasets_per_s"] == pytest.approx(16)
    assert len(bar.updates) == 4 and bar.updates[-1]["loss"] == 3.0
    log.queue(4, step_metrics(math.inf), 0.8)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(inf\) at step 4"):
        log.flush()
    log.queue(5, step_metrics(1.0, grad_norm=math.nan), 1.0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite grad_norm \(nan\) at step 5"):
        log.flush()


def test_a_step_without_a_valid_dataset_is_marked_and_has_no_loss_or_gradient(tmp_path):
    """Its 0 loss and 0 gradient norm are no measurements: the line says valid_fraction 0 and leaves
    them null; the window's mean skips it; the bar shows no number."""
    now = [0.0]
    config = make_config(log_every=1)
    bar = Bar()
    log = StepLog(config, 0, 3, MetricWriter(tmp_path / "metrics.jsonl"), bar, BudgetClock(clock=lambda: now[0]))
    for step, valid in enumerate([1.0, 0.0, 0.5]):
        loss = 2.0 if valid else 0.0  # what the step reports for a batch without a valid dataset
        log.queue(step, step_metrics(loss, grad_norm=0.3 if valid else 0.0, valid_fraction=valid), step / 3)
        now[0] += 1.0
    log.flush()
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines] == [1, 2, 3]
    invalid = lines[1]
    assert invalid["valid_fraction"] == 0.0 and invalid["loss_steps"] == 0
    assert invalid["loss"] is None and invalid["last_loss"] is None and invalid["grad_norm"] is None
    assert '"last_loss": null' in (tmp_path / "metrics.jsonl").read_text().splitlines()[1]
    assert lines[2]["last_loss"] == 2.0 and lines[2]["grad_norm"] == pytest.approx(0.3)
    assert lines[2]["valid_fraction"] == 0.5
    assert bar.updates[1]["loss"] == "none" and bar.updates[2]["loss"] == 2.0  # not nan, not 0
    assert math.isnan(log.losses[1]) and log.losses[::2] == [2.0, 2.0]


def test_rolling_back_drops_the_lines_past_a_step_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}, {"step": 2, "val_auc": 0.6},
             {"step": 3, "loss": 0.8}, {"step": 4, "val_auc": 0.7}]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"step": 5, "lo')  # killed mid-line
    assert metrics_module.roll_back(tmp_path, 2) == 3
    assert read_metrics(tmp_path) == lines[:3]
    assert metrics_module.roll_back(tmp_path, 2) == 0 and read_metrics(tmp_path) == lines[:3]
    assert metrics_module.roll_back(tmp_path, 0) == 3 and path.read_text() == ""
    assert metrics_module.roll_back(tmp_path / "missing", 0) == 0
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.jsonl"]  # no temporary file left


def test_the_bar_is_rich_on_a_terminal_and_plain_lines_elsewhere(monkeypatch):
    """The library's one progress bar (`mothernet_jax.progress.Progress`, which `train` shows): plain
    lines every `every` updates where stderr is no terminal, nothing when disabled, a
    `rich.progress` bar on a terminal."""
    from rich.progress import Progress as RichProgress

    from mothernet_jax import progress as progress_module
    from mothernet_jax.progress import Progress

    plain = io.StringIO()
    monkeypatch.setattr(progress_module.sys, "stderr", plain)
    bar = Progress(4, "train 0->4", enabled=True, every=2)
    for step in range(4):
        bar.update(1, loss=1.0 / (step + 1), datasets_per_s=10.0)
    bar.close()
    lines = plain.getvalue().splitlines()
    assert bar.rich is None and len(lines) == 2 and lines[-1].startswith("train 0->4") and "loss=0.25" in lines[-1]
    assert "datasets_per_s=10" in lines[-1] and "4/4" in lines[-1]
    quiet = io.StringIO()
    monkeypatch.setattr(progress_module.sys, "stderr", quiet)
    off = Progress(4, "train", enabled=False)
    off.update(1, loss=1.0)
    off.close()
    assert quiet.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(progress_module.sys, "stderr", Terminal())
    rich_bar = Progress(4, "train", enabled=True)
    try:
        assert isinstance(rich_bar.rich, RichProgress)
        rich_bar.update(1, loss=0.5)
        assert rich_bar.rich.tasks[0].completed == 1 and "loss=0.5" in rich_bar.rich.tasks[0].fields["info"]
    finally:
        rich_bar.close()
    assert rich_bar.rich is None  # stopped
