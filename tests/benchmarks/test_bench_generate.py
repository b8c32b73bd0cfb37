"""The generate benchmark's rate figures: the matmul rate, the FLOP counts and the printed share."""

import math
import re

import jax
import numpy as np
import pytest

import mothernet_jax as mn
from mothernet_jax.benchmarks import generate as bench
from mothernet_jax.generation import generate_batch_jit
from mothernet_jax.model.mothernet import abstract_params


def test_matmul_rate_is_a_positive_finite_rate():
    rate = bench.matmul_gflops(64, repeats=3)
    assert math.isfinite(rate) and rate > 0


@pytest.mark.parametrize(
    "preset, rows",
    # every preset at one row count, and the rows' term at two on `tiny` (the others' second row
    # count compiles again for the same terms: slow)
    [("tiny", 128), ("tiny", 256), ("tiny_output_attention", 128), ("tiny_full_rank_one_layer", 128),
     *(pytest.param(p, 256, marks=pytest.mark.slow) for p in ("tiny_output_attention", "tiny_full_rank_one_layer"))],
)
def test_flop_estimate_counts_the_products_xla_counts(preset, rows):
    # XLA also counts elementwise work (softmax, GELU, norms): a few % to ~12% on these tiny
    # models; a missing or doubled matrix product would fall outside
    config = mn.preset(preset)
    shape = jax.ShapeDtypeStruct
    x, y, n = shape((1, rows, 7), np.float32), shape((1, rows), np.int32), shape((1,), np.int32)
    args = (x, y, n, n)
    xla = bench.compiled_flops(generate_batch_jit, abstract_params(config), *args, config=config)
    estimate = bench.core_flops_estimate(config, rows)
    assert xla is not None  # this jax reports FLOPs on CPU
    assert estimate <= xla <= 1.15 * estimate


def test_flop_estimate_grows_with_rows_squared_in_attention():
    config = mn.preset("tiny")
    f = [bench.core_flops_estimate(config, rows) for rows in (128, 256, 384)]
    # the only term quadratic in the rows is attention's 4 t^2 d per layer: over equal steps of 128
    # rows its second difference is 4 d x 2 x 128^2 per layer, and the linear terms cancel
    assert f[2] - 2 * f[1] + f[0] == config.n_layers * 4 * config.embed_dim * 2 * 128**2


@pytest.mark.slow  # the CLI end to end; its FLOP count and matmul rate are tested above
def test_cli_prints_threads_and_the_share_of_the_matmul_rate(capsys):
    bench.main(
        "--preset tiny --sizes 50x5 --repeats 2 --batch 2 --predict-rows 1000 --matmul-size 64".split()
    )
    out = capsys.readouterr().out
    assert re.search(r"backend=\w+ device=.+ xla_threads=\d+ \(cpus=\d+\)", out)
    line = next(line for line in out.splitlines() if "share of the matmul rate" in line)
    gflop, rate, share = re.search(r"([\d.]+) GF\s+([\d.]+) GF/s\s+([\d.]+)%", line).groups()
    config, shape = mn.preset("tiny"), jax.ShapeDtypeStruct
    x, y, n = shape((1, 128, 5), np.float32), shape((1, 128), np.int32), shape((1,), np.int32)
    xla = bench.compiled_flops(generate_batch_jit, abstract_params(config), x, y, n, n, config=config)
    assert float(gflop) == pytest.approx(xla / 1e9, abs=0.01)
    assert float(rate) > 0 and float(share) > 0
    assert "128 rows padded" in line and "64^3 float32 matmul" in line
