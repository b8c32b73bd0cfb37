"""The Colab notebooks run top to bottom on CPU in their small setting: no cell raises, and every
code cell prints what it is there to show (checked cell by cell). Running them is slow (three
kernels, a training run, shipped-weight fits): `pytest -m slow`."""

import re
from pathlib import Path

import nbclient
import nbformat
import pytest

COLAB = Path(__file__).resolve().parents[2] / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
MAX_OUTPUT_BYTES = 300_000
PNG = "image/png"  # a cell that shows a figure: its output holds a PNG

FIRST_CELL = [r"backend: cpu", r"devices: \[CpuDevice\(id=0\)\]", r"SCALE = small"]
AUC = r"AUC (0\.9\d{3}|1\.0000)"  # breast cancer: every method here reaches 0.9

# notebook -> code cell index -> patterns its output must match (text and the MIME types shown)
EXPECTED = {
    "01_quickstart": {
        1: FIRST_CELL,
        3: [r"\(\d+, 30\) \(\d+, 30\)"],
        5: [
            r"shipped weights: [\d,]+ optimiser steps, [\d,]+ synthetic datasets seen",
            rf"MotherNet +{AUC}  fit +[\d.]+ s  predict +[\d.]+ ms",
            rf"HistGradientBoosting +{AUC}",
        ],
        7: [PNG],
        9: [r"NumPy predictor agrees with the estimator; \[[01 ]+\]"],
    },
    "02_generate_in_jax": {
        1: FIRST_CELL,
        3: [r"ModelConfig\(", r"[\d,]+ parameters"],
        5: [rf"eager and jitted children differ by at most \d\.\de-0[5-9]; test {AUC}"],
        7: [r"x \(16, 128, 100\) y \(16, 128\) valid \d+ of 16"],
        9: [r"mean test accuracy over 16 synthetic datasets: 0\.\d{3}"],
        11: [r"generate: [\d,]+ datasets/s", r"predict: +[\d.,]+ M rows/s"],
        13: [r"d test loss / d X_train: \(\d+, 30\) finite: True", r"most sensitive to: \[[\d ]+\]"],
        15: [
            rf"generated child: train loss \d\.\d{{4}}  test {AUC}",
            rf"fine-tuned child: train loss \d\.\d{{4}}  test {AUC}",
        ],
    },
    "03_meta_training_tpu": {
        1: FIRST_CELL,
        3: [r"work directory: \S+run"],
        5: [r"Mesh\(", r"8 datasets per step, model \d+-wide x \d+ layers"],
        7: [r"\w+ at step 6\n", r"\w+ at step 10 resumed from 6"],
        9: [PNG, r"[\d.]+ datasets/s at the last log"],
        11: [r"new weights +AUC \d\.\d{4}", rf"shipped weights +{AUC}"],
        13: [r"pmap loop: step 2, loss \d+\.\d{4}"],
    },
}


def test_the_three_notebooks_are_there_and_every_code_cell_is_checked():
    assert [p.stem for p in NOTEBOOKS] == list(EXPECTED)
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
        assert code == sorted(EXPECTED[path.stem]), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_small(path):
    assert path.stat().st_size < MAX_OUTPUT_BYTES


def shown(cell) -> str:
    """A code cell's output as one text: its streams and text results, and the MIME types shown."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.extend(output.data)  # the MIME types
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_cpu(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # one CPU device, as a plain Colab CPU runtime
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the cell that failed
    for index, patterns in EXPECTED[path.stem].items():
        cell = notebook.cells[index]
        text = shown(cell)
        assert cell.execution_count is not None, f"cell {index} did not run"
        assert not [o for o in cell.outputs if o.output_type == "error"], f"cell {index}: {text}"
        for pattern in patterns:
            assert re.search(pattern, text), f"cell {index} of {path.name}: {pattern!r} not in\n{text}"
