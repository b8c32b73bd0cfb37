"""What the documentation says: README's sentences, the docs' settings tables and the docstrings that
name a value, against the code. These read text, not behaviour, so they are out of the default run
(an edit of a sentence should not fail README's test command); `pytest -m slow` and CI run them.
The behaviour each sentence describes has its own test in the default run (named beside each one)."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def flat(text: str) -> str:
    """`text` with every run of whitespace one space (sentences wrap anywhere)."""
    return " ".join(text.split())


def settings_table(name: str, column: int) -> dict:
    """A column of the settings table in docs/`name` (1: "recommended", 2: "library default"),
    parsed as JSON values (`None` as null)."""
    table = {}
    for line in (ROOT / "docs" / name).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[column].startswith("`"):
            value = cells[column].strip("`")
            table[cells[0].strip("`")] = None if value == "None" else json.loads(value) if value[0] in "0123456789" else value
    return table


def test_the_settings_tables_give_the_library_defaults_and_the_shipped_recommendations():
    """docs/FAST_DEFAULTS.md and docs/REGRESSION.md: the "library default" column is
    settings.LIBRARY_DEFAULTS, the "recommended" one the shipped manifest's recommendation
    (behaviour: tests/pretrained/test_shipped_weights.py, the defaults tests)."""
    from mothernet_jax.pretrained import REGRESSION_NAME, load_info, shipped_path
    from mothernet_jax.settings import CLASSIFIER, LIBRARY_DEFAULTS, REGRESSOR

    assert settings_table("FAST_DEFAULTS.md", 2) == {key: LIBRARY_DEFAULTS[key] for key in CLASSIFIER}
    assert settings_table("REGRESSION.md", 2) == {key: LIBRARY_DEFAULTS[key] for key in REGRESSOR}
    info = load_info()
    assert settings_table("FAST_DEFAULTS.md", 1) == {name: info.get(name, LIBRARY_DEFAULTS[name]) for name in CLASSIFIER}
    info = load_info(shipped_path(REGRESSION_NAME))
    assert settings_table("REGRESSION.md", 1) == {name: info.get(name, LIBRARY_DEFAULTS[name]) for name in REGRESSOR}


def test_readme_says_what_a_fresh_runs_file_gets():
    """(behaviour: tests/pretrained/test_weight_traps.py, a fresh run's export takes the library's defaults)"""
    assert (
        "a fresh run's file recommends none, and the estimators take the library's defaults, which are "
        "the settings the shipped weights were measured at: 4 native members of 256 context rows"
        in flat((ROOT / "README.md").read_text())
    )


def test_readme_and_the_estimators_say_how_to_turn_the_compilation_cache_off():
    """(behaviour: tests/classifier/test_new_user_cases.py, the compilation cache tests)"""
    from mothernet_jax import MotherNetClassifier, MotherNetRegressor

    assert (
        "A cache you chose (`JAX_COMPILATION_CACHE_DIR`) is left alone; `MOTHERNET_JAX_COMPILATION_CACHE=0` "
        "turns it off" in flat((ROOT / "README.md").read_text())
    )
    for estimator in (MotherNetClassifier, MotherNetRegressor):
        assert "MOTHERNET_JAX_COMPILATION_CACHE=0" in estimator.__doc__


def test_the_classifiers_docstring_says_the_temperature_changes_nothing_with_the_refit():
    """(behaviour: tests/classifier/test_new_user_cases.py, the temperature test)"""
    from mothernet_jax import MotherNetClassifier

    doc = flat(MotherNetClassifier.__doc__)
    assert "With output_layer=\"refit\" (the shipped weights' and the library's default)" in doc
    assert "the probabilities do not depend on it" in doc


def test_the_demo_says_it_fits_the_classifier_as_it_comes():
    """(behaviour: tests/pretrained/test_shipped_weights.py, the demo's MotherNet)"""
    from mothernet_jax import demo

    assert "`MotherNetClassifier()`" in demo.__doc__


def test_each_training_presets_docstring_gives_its_command():
    """(behaviour: tests/train/test_train_config.py, `--preset name` resolves to the preset)"""
    from mothernet_jax.train import config as train_config

    for name, preset in train_config.PRESETS.items():
        doc = preset.__doc__
        assert f"mothernet-jax train --preset {name}" in doc and ("CPU" in doc or "H100" in doc), name


def test_the_model_card_gives_the_gpu_sessions_command():
    """(behaviour: tests/train/test_train_gpu_session.py runs the session)"""
    command = 'PYTHONUNBUFFERED=1 PYTHONPATH=. python -m mothernet_jax.gpu_session --out "$OUT"'
    assert command in (ROOT / "MODEL_CARD.md").read_text()


def test_the_gpu_sessions_text_speaks_of_the_project_alone():
    """The module (docstring, help, comments) describes training on any machine with a GPU, not the
    limits of one that lent it (issue 31: "a lent GPU's session", "a machine that runs one command
    for at most 10 minutes, has no package index ... returns only the files under OUT (at most 8 of
    16 MiB)")."""
    import re

    from mothernet_jax import gpu_session

    assert gpu_session.__doc__.startswith("Train on a GPU in one command:")
    assert gpu_session.__doc__.startswith(gpu_session._parser().description)
    text = flat((ROOT / "mothernet_jax" / "gpu_session.py").read_text()).lower()
    machine = r"\blent\b|\blend(?:er|s)?\b|\bmib\b|package index|at most 10 minutes|what a file may bring back|returns only"
    assert not re.findall(machine, text)
