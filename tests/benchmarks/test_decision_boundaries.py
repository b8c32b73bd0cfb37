"""The toy decision-boundary figure, drawn with baselines only (MotherNet's column is the same code)."""

from mothernet_jax.benchmarks import decision_boundaries


def test_draws_one_png_with_baseline_columns(tmp_path, capsys):
    out = tmp_path / "figures" / "boundaries.png"
    argv = ["--methods", "logistic_regression", "random_forest", "--out", str(out)]
    assert decision_boundaries.main(argv) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert str(out) in capsys.readouterr().out


def test_toy_datasets_are_the_three_of_the_paper():
    datasets = decision_boundaries.toy_datasets()
    assert [name for name, _, _ in datasets] == ["moons", "circles", "linearly separable"]
    for _, x, y in datasets:
        assert x.shape == (100, 2) and set(y) == {0, 1}
