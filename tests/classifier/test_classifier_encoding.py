"""The classifier's NumPy parts: feature encoding, missing values, and the ensemble plan."""

import datetime
import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import QuantileTransformer

from mothernet_jax.estimator.plan import (
    class_groupings,
    group_moduli,
    plan_members,
    stratified_rows,
)
from mothernet_jax.runtime.checks import reject_infinite
from mothernet_jax.runtime.child import Child
from mothernet_jax.runtime.encoding import (
    INDICATOR,
    ONEHOT,
    ORDINAL,
    QUANTILE,
    RAW,
    FeatureEncoder,
    infer_categorical,
)
from mothernet_jax.runtime.predictor import ClassificationPredictor


def block(encoder, encoded, kind):
    kinds, _ = encoder.layout()
    return encoded[:, kinds == kind]


# -- encoding ----------------------------------------------------------------------------------------


def test_quantile_block_matches_scikit_learn():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(size=500), rng.integers(0, 4, 500), rng.normal(size=500)])
    encoder = FeatureEncoder.fit(X, np.zeros(3, bool))
    expected = QuantileTransformer(n_quantiles=500).fit(X)
    X_new = np.column_stack([rng.lognormal(size=50) * 2, rng.integers(-1, 5, 50), rng.normal(size=50)])
    for data in (X, X_new):
        ours = block(encoder, encoder.transform(data), QUANTILE)
        np.testing.assert_allclose(ours, expected.transform(data), atol=1e-9)


def test_missing_values_are_imputed_flagged_or_their_own_level():
    X = np.array([[1.0, "a", 0.5], [np.nan, "b", 1.5], [3.0, None, 2.5], [5.0, "a", 3.5]], dtype=object)
    encoder = FeatureEncoder.fit(X, np.array([False, True, False]))
    encoded = encoder.transform(X)
    np.testing.assert_allclose(block(encoder, encoded, RAW), [[1, 0.5], [3, 1.5], [3, 2.5], [5, 3.5]])
    np.testing.assert_allclose(block(encoder, encoded, INDICATOR), [[0], [1], [0], [0]])  # column 0 only
    np.testing.assert_allclose(block(encoder, encoded, ORDINAL), [[0], [1], [2], [0]])  # levels a, b, missing
    np.testing.assert_allclose(block(encoder, encoded, ONEHOT), np.eye(3)[[0, 1, 2, 0]])
    quantile = block(encoder, encoded, QUANTILE)
    np.testing.assert_allclose(quantile[1, 0], np.mean(quantile[[0, 2, 3], 0]))  # imputed in its own scale
    assert not np.isnan(encoded).any()
    unseen = encoder.transform(np.array([[np.nan, "zebra", 1.0]], dtype=object))
    np.testing.assert_allclose(block(encoder, unseen, ORDINAL), [[2]])  # an unseen level is missing

    # a column without missing training values: an unseen level gets no one-hot bit and the mean code
    encoder = FeatureEncoder.fit(np.array([["a"], ["b"], ["b"]], dtype=object), np.array([True]))
    unseen = encoder.transform(np.array([["c"], [None]], dtype=object))
    np.testing.assert_allclose(block(encoder, unseen, ONEHOT), np.zeros((2, 2)))
    np.testing.assert_allclose(block(encoder, unseen, ORDINAL), [[2 / 3], [2 / 3]])


def test_numeric_categorical_levels_and_infinite_values():
    X = np.array([[1.0, 0.0], [2.0, 1.0], [2.0, np.nan], [7.0, 1.0]])
    encoder = FeatureEncoder.fit(X, np.array([True, False]))
    assert encoder.levels[0].dtype.kind == "f"
    np.testing.assert_allclose(block(encoder, encoder.transform(X), ORDINAL).ravel(), [0, 1, 1, 2])
    with pytest.raises(ValueError, match="infinite values in column 0 "):  # categorical, numeric levels
        encoder.transform(np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="infinite values in column 1 "):  # numeric
        encoder.transform(np.array([[1.0, -np.inf]]))
    with pytest.raises(ValueError, match="infinite values in column 0 "):
        FeatureEncoder.fit(np.array([[np.inf, 0.0], [1.0, 1.0]]), np.array([True, False]))


def test_reject_infinite_is_one_line_naming_the_column():
    reject_infinite(np.array([[np.nan, 1.0]]))  # NaN is missing, not infinite
    reject_infinite(np.array(["inf", "a"]), column=3)  # text is not checked here
    with pytest.raises(ValueError, match=r"^X contains infinite values in column 2 \(NaN is accepted") as error:
        reject_infinite(np.array([[0.0, 1.0, 2.0, np.inf], [0.0, 1.0, -np.inf, 3.0]], np.float32))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="in column 'age' "):
        reject_infinite(np.array([1.0, np.inf]), column="age")
    predictor = ClassificationPredictor([Child(((np.ones((3, 2), np.float32), np.zeros(2, np.float32)),),
                                 np.zeros(3, np.float32), np.ones(3, np.float32))])  # fmt: skip
    with pytest.raises(ValueError, match="in column 1 "):
        predictor.predict_proba(np.array([[0.0, np.inf, 1.0]]))


def test_auto_categorical_columns():
    frame = pd.DataFrame(
        {
            "float": [1.0, np.nan],
            "int": [1, 2],
            "bool": [True, False],
            "object": ["a", None],
            "string": pd.array(["a", None], dtype="string"),
            "category": pd.Categorical(["x", "y"]),
            "nullable": pd.array([1, None], dtype="Int64"),
        }
    )
    assert infer_categorical(frame).tolist() == [False, False, False, True, True, True, False]
    mixed = np.array([[1.0, "a", None], [2, 3.5, np.nan]], dtype=object)
    # a column of objects with no present value is categorical: text in new rows is an unseen level
    assert infer_categorical(mixed).tolist() == [False, True, True]
    assert infer_categorical(np.array([["1", "b"]])).tolist() == [False, True]  # "1" is a number
    assert infer_categorical(np.zeros((2, 3))).tolist() == [False, False, False]


def test_categorical_features_as_mask_indices_or_names():
    from mothernet_jax.estimator.classifier import MotherNetClassifier

    clf = MotherNetClassifier()
    frame = pd.DataFrame({"a": [0, 1], "b": [1.0, 2.0], "c": [3, 4]})
    clf.feature_names_in_ = np.array(frame.columns, dtype=object)
    for spec in ([True, False, True], [0, -1], ["a", "c"]):
        clf.categorical_features = spec
        assert clf._categorical_mask(3).tolist() == [True, False, True]
    clf.categorical_features = ["d"]
    with pytest.raises(ValueError, match="not columns"):
        clf._categorical_mask(3)


# -- the ensemble plan -----------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [11, 12, 37, 90, 91, 630])
def test_class_groups_separate_every_pair_in_each_round(n_classes):
    moduli = group_moduli(n_classes, 10)
    assert all(m <= 10 for m in moduli)
    members = class_groupings(n_classes, 2 * len(moduli), 10, np.random.default_rng(0))
    for round_ in (members[: len(moduli)], members[len(moduli) :]):
        codes = np.stack([groups for groups, _ in round_], axis=1)
        assert len({tuple(code) for code in codes}) == n_classes
        for groups, n_groups in round_:
            assert set(groups) == set(range(n_groups))  # every group non-empty
            sizes = np.bincount(groups)
            assert sizes.max() - sizes.min() <= 1  # balanced


def test_too_many_classes_for_ten_groups():
    assert group_moduli(2520, 10) == [10, 9, 7, 8]
    with pytest.raises(ValueError, match="at most 2520"):
        group_moduli(2521, 10)


def test_stratified_rows_keep_proportions_and_every_class():
    y = np.repeat(np.arange(5), [500, 300, 150, 48, 2])
    rows = stratified_rows(y, 100, np.random.default_rng(0))
    assert len(rows) == 100 and len(set(rows)) == 100 and np.all(np.diff(rows) > 0)
    counts = np.bincount(y[rows], minlength=5)
    assert counts.min() >= 1
    assert np.all(np.abs(counts - np.array([500, 300, 150, 48, 2]) / 10) <= 1)


def test_plan_limits_columns_keeps_the_best_and_adds_indicators_when_there_is_room():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    wide = rng.normal(size=(400, 130))
    wide[:, 7] += 3 * y  # the most informative column
    wide[rng.random(wide.shape) < 0.1] = np.nan
    encoder = FeatureEncoder.fit(wide, np.zeros(130, bool))
    encoded = encoder.transform(wide)
    kinds, sources = encoder.layout()
    plans = plan_members(
        encoder, encoded, y, n_classes=3, n_estimators=6, max_train_rows=300, max_features=100,
        max_classes=10, rng=np.random.default_rng(1),
    )  # fmt: skip
    for plan in plans:
        assert len(plan.columns) == 100 and len(set(plan.columns)) == 100
        assert 7 in sources[plan.columns] and not (kinds[plan.columns] == INDICATOR).any()
        assert len(plan.rows) == 300 and set(y[plan.rows]) == {0, 1, 2}
    assert len({tuple(p.rows) for p in plans}) == 6  # each member its own subsample

    narrow = wide[:, :5]
    encoder = FeatureEncoder.fit(narrow, np.zeros(5, bool))
    kinds, sources = encoder.layout()
    plans = plan_members(
        encoder, encoder.transform(narrow), y, n_classes=3, n_estimators=4, max_train_rows=None,
        max_features=100, max_classes=10, rng=np.random.default_rng(1),
    )  # fmt: skip
    for plan in plans:
        assert sorted(kinds[plan.columns] == INDICATOR) == [False] * 5 + [True] * 5
        assert len(plan.rows) == 400
    assert plans[0].columns.tolist() == list(range(5)) + list(np.flatnonzero(kinds == INDICATOR))


def test_label_shift_and_rotation_pairs_do_not_repeat():
    y = np.arange(40) % 2
    X = np.random.default_rng(0).normal(size=(40, 2))
    encoder = FeatureEncoder.fit(X, np.zeros(2, bool))
    plans = plan_members(
        encoder, encoder.transform(X), y, n_classes=2, n_estimators=8, max_train_rows=None,
        max_features=100, max_classes=10, rng=np.random.default_rng(0),
    )  # fmt: skip
    pairs = [(p.quantile, p.feature_shift, p.label_shift) for p in plans]
    assert len(set(pairs)) == 8  # 2 variants x 2 rotations x 2 label shifts
    for plan, (q, shift, label_shift) in zip(plans, pairs, strict=True):
        assert plan.groups.tolist() == [(c + label_shift) % 2 for c in range(2)]
        assert plan.columns.tolist() == np.roll(np.arange(2) + (2 if q else 0), -shift).tolist()
    assert list(itertools.islice(pairs, 1)) == [(False, 0, 0)]


def test_one_vs_rest_plan_gives_every_class_its_own_binary_members():
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    X = rng.normal(size=(90, 4))
    encoder = FeatureEncoder.fit(X, np.zeros(4, bool))
    plans = plan_members(
        encoder, encoder.transform(X), y, n_classes=3, n_estimators=4, max_train_rows=None,
        max_features=100, max_classes=10, rng=np.random.default_rng(0), one_vs_rest=True,
    )  # fmt: skip
    assert len(plans) == 12 and all(p.n_groups == 2 for p in plans)
    for m, plan in enumerate(plans):
        alone = [c for c in range(3) if np.sum(plan.groups == plan.groups[c]) == 1]
        assert alone == [m % 3]  # member m: class m % 3 against the other two
        assert plan.groups.tolist() == [int((c == m % 3) + plan.label_shift) % 2 for c in range(3)]
    assert all(not p.quantile and p.feature_shift == p.label_shift == 0 for p in plans[:3])  # round 0
    assert [p.quantile for p in plans[3:]] == [True] * 3 + [False] * 3 + [True] * 3
    for c in range(3):  # one class's later members never repeat a (variant, rotation, flip)
        pairs = [(p.quantile, p.feature_shift, p.label_shift) for p in plans[c::3]]
        assert len(set(pairs)) == 4
    # a binary task is the same plan with or without one_vs_rest
    binary = [
        plan_members(
            encoder,
            encoder.transform(X),
            y % 2,
            n_classes=2,
            n_estimators=4,
            max_train_rows=None,
            max_features=100,
            max_classes=10,
            rng=np.random.default_rng(0),
            one_vs_rest=flag,
        )  # fmt: skip
        for flag in (False, True)
    ]
    assert [p.groups.tolist() for p in binary[0]] == [p.groups.tolist() for p in binary[1]]


# -- numbers stored as text, dates, identifiers ------------------------------------------------------


def test_numbers_stored_as_text_are_numbers_whatever_their_storage():
    from mothernet_jax.runtime.encoding import to_numbers

    assert to_numbers(np.array(["1.5", " -2 ", "nan", "", "1e3"])).tolist()[:2] == [1.5, -2.0]
    assert np.isnan(to_numbers(np.array(["nan", ""], dtype=object))).all()
    X = np.array([[1.5, 2.0], [np.nan, -3.0]])
    frame = pd.DataFrame(X, columns=["a", "b"])
    for stored in (
        X.astype(str),
        X.astype(str).astype(object),
        frame.astype(str),
        frame.astype("string"),
        pd.DataFrame({"a": ["1.5", None], "b": ["2", "-3"]}),
    ):
        assert infer_categorical(stored).tolist() == [False, False], type(stored)
    mixed = pd.DataFrame({"a": ["1.5", "x"], "b": pd.Categorical(["1", "2"])})
    assert infer_categorical(mixed).tolist() == [True, True]  # text, and a declared category


def test_datetime_columns_become_seconds_since_the_epoch():
    from mothernet_jax.runtime.encoding import to_numbers

    day = 86400.0
    frame = pd.DataFrame(
        {
            "naive": pd.to_datetime(["1970-01-02", None, "2020-01-01"]),
            "utc": pd.to_datetime(["1970-01-02", "1970-01-03", "1970-01-04"]).tz_localize("UTC"),
            "paris": pd.to_datetime(["1970-01-02 01:00"] * 3).tz_localize("Europe/Paris"),
            "duration": pd.to_timedelta([1, 2, 3], unit="h"),
            "x": [1.0, 2.0, 3.0],
        }
    )
    assert infer_categorical(frame).tolist() == [False] * 5
    encoder = FeatureEncoder.fit(frame.to_numpy(), np.zeros(5, bool))
    raw = block(encoder, encoder.transform(frame.to_numpy(), impute=False), RAW)
    np.testing.assert_allclose(raw[0], [day, day, day, 3600.0, 1.0])
    assert np.isnan(raw[1, 0]) and raw[2, 0] == 18262 * day  # NaT is missing
    objects = np.array([datetime.date(1970, 1, 2), np.datetime64("1970-01-02T00:00:00"), None], dtype=object)
    np.testing.assert_allclose(to_numbers(objects)[:2], [day, day])
    np.testing.assert_allclose(to_numbers(np.array(["1970-01-02"], dtype="datetime64[D]")), [day])


def test_identifier_or_date_like_text_columns_get_a_warning_naming_them():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(40)],
            "colour": rng.choice(["red", "green"], 40),
            "x": rng.normal(size=40),
        }
    )
    with pytest.warns(UserWarning, match="'customer_id' has 40 distinct values in 40 rows") as record:
        FeatureEncoder.fit(frame.to_numpy(), infer_categorical(frame), list(frame.columns))
    assert len(record) == 1  # not the colour column, not the numbers
    dates = np.array([[f"2020-01-{d:02d}"] for d in range(1, 29)], dtype=object)
    with pytest.warns(UserWarning, match="column 0 has 28 distinct"):
        FeatureEncoder.fit(dates, infer_categorical(dates))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FeatureEncoder.fit(dates[:10], np.array([True]))  # too few rows to tell
        FeatureEncoder.fit(frame[["colour", "x"]].to_numpy(), np.array([True, False]))
