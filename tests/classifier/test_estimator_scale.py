"""What the estimators do as the data grows (issue 30) and their randomness (issue 31): their own
threads (n_jobs) restored after fit and predict, independent random streams, the "auto" settings
scheduled by the training rows, and fine-tuning on a pool of rows other than the context."""

import dataclasses

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from mothernet_jax.estimator import fitting, output_layer, schedule
from mothernet_jax.estimator.classifier import MotherNetClassifier
from mothernet_jax.estimator.finetune import Finetune
from mothernet_jax.estimator.member_generation import generate_children
from mothernet_jax.estimator.plan import plan_members
from mothernet_jax.estimator.regressor import MotherNetRegressor
from mothernet_jax.estimator.threads import thread_count


def blobs(n=200, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + 1.5 * y[:, None], y


def pools() -> dict[str, int]:
    """Threads of each BLAS / OpenMP library loaded in this process."""
    return {info["filepath"]: info["num_threads"] for info in threadpool_info()}


# -- threads ------------------------------------------------------------------------------------------


def test_n_jobs_counts_threads_as_scikit_learn_does():
    assert thread_count(None) == 1
    assert thread_count(3) == 3
    assert thread_count(-1, cpus=8) == 8 and thread_count(-2, cpus=8) == 7 and thread_count(-20, cpus=8) == 1
    for bad in (0, 1.5, "2", True):
        with pytest.raises(ValueError, match=r"^n_jobs must be None or a nonzero integer"):
            MotherNetClassifier(n_jobs=bad).fit(*blobs())


@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_fit_and_predict_own_their_threads_and_give_the_users_back(estimator, tiny_weights, tiny_regression_weights, monkeypatch):
    """Inside fit and predict the BLAS and OpenMP pools run at n_jobs threads (None: one); after
    them, a user's NumPy has the threads it had (here 2, set by the user), also when fit fails."""
    X, y = blobs()
    seen = []
    features = output_layer.hidden_features

    def record(*args, **kwargs):
        seen.append(set(pools().values()))
        return features(*args, **kwargs)

    monkeypatch.setattr(output_layer, "hidden_features", record)  # called in fit (the refit)
    if estimator == "classifier":
        make = lambda **kw: MotherNetClassifier(weights=tiny_weights, n_estimators=1, random_state=0, **kw)  # noqa: E731
        predict = "predict_proba"
    else:
        make = lambda **kw: MotherNetRegressor(weights=tiny_regression_weights, n_estimators=1, random_state=0, **kw)  # noqa: E731
        predict = "predict"
        y = X[:, 0] + 0.1 * y
    with threadpool_limits(limits=2):
        before = pools()
        model = make().fit(X, y)
        assert seen and seen[-1] == {1} and pools() == before
        inside = []
        monkeypatch.setattr(model.predictor_, predict, lambda X, **_: inside.append(set(pools().values())))
        getattr(model, predict)(X)
        assert inside == [{1}] and pools() == before
        make(n_jobs=3).fit(X, y)
        assert seen[-1] == {3} and pools() == before
        monkeypatch.setattr(output_layer, "hidden_features", lambda *a: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            make().fit(X, y)  # a fit that fails inside gives the threads back too
        assert pools() == before


# -- random streams -------------------------------------------------------------------------------------


def test_the_plan_the_read_out_and_the_fine_tuning_draw_from_independent_streams():
    """Issue 31: the plan and the read-out's subsample restarted one stream (default_rng(seed)
    twice), so the subsample replayed the plan's draws. Each use has its own spawned stream."""
    table = fitting.TrainingTable(*([None] * 8), seed=1234)
    first = {stream: table.rng(stream).integers(1 << 30, size=4).tolist() for stream in fitting.STREAMS}
    assert len({tuple(v) for v in first.values()}) == len(fitting.STREAMS)
    spawned = np.random.SeedSequence(1234).spawn(3)
    for i, stream in enumerate(fitting.STREAMS):
        assert np.random.default_rng(spawned[i]).integers(1 << 30, size=4).tolist() == first[stream]
        assert table.rng(stream).integers(1 << 30, size=4).tolist() == first[stream]  # reproducible
    with pytest.raises(ValueError, match="stream must be one of plan, read_out, finetune"):
        table.rng("plans")


@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_a_fit_draws_each_use_from_its_own_stream(estimator, tiny_weights, tiny_regression_weights, monkeypatch):
    X, y = blobs(300)
    asked = []
    rng = fitting.TrainingTable.rng
    monkeypatch.setattr(fitting.TrainingTable, "rng", lambda self, stream: asked.append(stream) or rng(self, stream))
    monkeypatch.setattr(output_layer, "MAX_LOGISTIC_ROWS", 100)
    settings = dict(n_estimators=2, max_train_rows=64, random_state=0, finetune_steps=2)
    if estimator == "classifier":
        MotherNetClassifier(weights=tiny_weights, **settings).fit(X, y)
        assert sorted(asked) == ["finetune", "plan", "read_out"]
    else:
        MotherNetRegressor(weights=tiny_regression_weights, **settings).fit(X, X[:, 0])
        assert sorted(asked) == ["finetune", "plan"]  # the ridge read-out draws nothing


# -- the schedule ---------------------------------------------------------------------------------------


def test_the_schedule_changes_only_auto_settings_and_only_from_its_row_count():
    chosen = {"finetune_steps": 0, "finetune_pool": None, "finetune_layers": "all", "output_layer": "refit"}
    plan = schedule.Schedule(from_rows=100, settings={"finetune_steps": 30, "finetune_pool": 64})
    every = set(chosen)
    assert schedule.apply(chosen, every, 99, plan) == chosen
    assert schedule.apply(chosen, every, 100, plan) == {**chosen, "finetune_steps": 30, "finetune_pool": 64}
    assert schedule.apply(chosen, every - {"finetune_steps"}, 100, plan) == {**chosen, "finetune_pool": 64}
    assert schedule.apply(chosen, every, 10**6, None) == chosen
    output_only = {**chosen, "finetune_layers": "output"}  # set by the user with the refit: no fine-tuning added
    assert schedule.apply(output_only, every - {"finetune_layers"}, 100, plan)["finetune_steps"] == 0


def test_estimators_follow_the_schedule_beyond_its_rows_and_explicit_values_win(
    tiny_weights, tiny_regression_weights, monkeypatch
):
    X, y = blobs(300)
    small = schedule.Schedule(from_rows=250, settings={"finetune_steps": 3, "finetune_pool": 64, "finetune_rows": 16})
    monkeypatch.setattr(MotherNetClassifier, "_schedule", small)  # the estimators' schedule.CLASSIFIER
    monkeypatch.setattr(MotherNetRegressor, "_schedule", small)
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0)
    assert clf.fit(X[:200], y[:200]).settings_["finetune_steps"] == 0  # below 250 rows: the recommendation
    fitted = clf.fit(X, y)
    assert {k: fitted.settings_[k] for k in small.settings} == dict(small.settings) and fitted.finetune_steps_ == 3
    assert clf.get_params()["finetune_steps"] == "auto"  # fit does not change the parameters
    explicit = MotherNetClassifier(weights=tiny_weights, n_estimators=2, random_state=0, finetune_steps=0).fit(X, y)
    assert explicit.settings_["finetune_steps"] == 0 and explicit.settings_["finetune_pool"] == 64
    reg = MotherNetRegressor(weights=tiny_regression_weights, n_estimators=2, random_state=0).fit(X, X[:, 0])
    assert reg.settings_["finetune_pool"] == 64 and reg.finetune_steps_ == 3
    assert set(schedule.LARGE_DATA_FINETUNE) <= set(fitted.settings_)


# -- fine-tuning on a pool of rows ------------------------------------------------------------------------


def test_each_member_fine_tunes_on_its_own_stratified_pool(tiny_weights):
    X, y = blobs(600)
    clf = MotherNetClassifier(weights=tiny_weights, n_estimators=1, output_layer="generated").fit(X[:50], y[:50])
    encoder, encoded = clf.predictor_.encoder, clf.predictor_.encode(X)
    common = dict(n_classes=3, n_estimators=3, max_train_rows=64, max_features=100, max_classes=10)
    plans = plan_members(encoder, encoded, y, **common, rng=np.random.default_rng(0), finetune_pool=120)
    for plan in plans:
        assert len(plan.tuning_rows) == 120 and np.bincount(y[plan.tuning_rows]).tolist() == [40, 40, 40]
        assert plan.fine_tuning_rows is plan.tuning_rows and len(plan.rows) == 64
    assert not np.array_equal(plans[0].tuning_rows, plans[1].tuning_rows)
    everything = plan_members(encoder, encoded[:100], y[:100], **common, rng=np.random.default_rng(0), finetune_pool=120)
    assert all(p.tuning_rows.tolist() == list(range(100)) for p in everything)  # fewer rows than the pool: all
    plain = plan_members(encoder, encoded, y, **common, rng=np.random.default_rng(0))
    assert all(p.tuning_rows is None and p.fine_tuning_rows is p.rows for p in plain)

    params, config = tiny_weights
    finetune = Finetune(steps=5, learning_rate=1e-2)

    def children(plans, tune=finetune):
        return generate_children(params, config, encoded, y, plans, finetune=tune, rng=np.random.default_rng(0))

    def output(children):
        return np.concatenate([c.layers[-1][0].ravel() for c in children])

    context_rows = [dataclasses.replace(p, tuning_rows=p.rows) for p in plain]
    np.testing.assert_array_equal(output(children(context_rows)), output(children(plain)))  # the same rows
    assert not np.allclose(output(children(plans)), output(children(plain)))  # the pool's rows
    untuned = children(plans, Finetune(steps=0))  # no fine-tuning: the pool is not read
    no_pool = [dataclasses.replace(p, tuning_rows=None) for p in plans]
    np.testing.assert_array_equal(output(untuned), output(children(no_pool, Finetune(steps=0))))


@pytest.mark.parametrize("regression", [False, True])
def test_fine_tuning_with_the_refit_starts_from_a_fitted_read_out_where_the_generated_one_is_worse_than_a_guess(
    regression, tiny_weights, tiny_regression_weights, monkeypatch
):
    """A generated read-out worse than the best constant guess on the fine-tuning rows (the shipped
    weights' 3-class children start near 9 nats) is replaced, before fine-tuning with the refit, by
    the read-out of the hidden layer fitted on those rows: scikit-learn's logistic regression (a
    regressor's: ridge with GCV). One better than a guess is kept, as are the hidden layers."""
    from sklearn.linear_model import LogisticRegression

    from mothernet_jax.estimator import member_generation as mg
    from mothernet_jax.runtime.child import hidden_features, numpy_layers, standardise_rows

    monkeypatch.setattr(output_layer, "LOGISTIC_TOL", 1e-10)
    monkeypatch.setattr(output_layer, "LOGISTIC_MAX_ITER", 10_000)
    X, y = blobs(300)
    weights = tiny_regression_weights if regression else tiny_weights
    target = X[:, 0] + 0.3 * X[:, 1] ** 2 if regression else y
    estimator = MotherNetRegressor if regression else MotherNetClassifier
    fitted = estimator(weights=weights, output_layer="generated").fit(X[:50], target[:50])
    encoded = fitted.predictor_.encode(X)
    plans = plan_members(fitted.predictor_.encoder, encoded, y, n_classes=3, n_estimators=2, max_train_rows=128,
                         max_features=100, max_classes=10, rng=np.random.default_rng(0))  # fmt: skip
    X_pad, labels, n_rows, n_features, n_groups = mg._member_arrays(encoded, target, plans, 128, 100, regression)
    layers, mean, std = mg.generate_members(weights.params, X_pad, labels, n_rows, n_features, config=weights.config)
    layers = [(w, np.asarray(b)) for w, b in layers]
    layers[-1] = (np.asarray(layers[-1][0]) * 30.0, layers[-1][1] * 30.0)  # wild read-outs
    started, replaced = output_layer.start_output_layers(
        layers, mean, std, X_pad, labels, n_rows, n_groups, temperature=0.8, regression=regression
    )
    assert replaced.tolist() == [True, True]
    again, replaced = output_layer.start_output_layers(  # fitted read-outs beat a guess: kept
        started, mean, std, X_pad, labels, n_rows, n_groups, temperature=0.8, regression=regression
    )
    assert replaced.tolist() == [False, False]
    np.testing.assert_array_equal(again[-1][0], started[-1][0])
    member = [(tuple(np.asarray(f[0]) for f in w) if isinstance(w, tuple) else np.asarray(w[0]), np.asarray(b[0]))
              for w, b in started]  # fmt: skip
    z = standardise_rows(X_pad[0, :128], np.asarray(mean[0]), np.asarray(std[0]), np).astype(np.float64)
    hidden = hidden_features(numpy_layers(member, np.float64), z, np)
    outputs = hidden @ member[-1][0] + member[-1][1]
    scaled = hidden / hidden.std()
    if regression:
        moments = output_layer.Moments(hidden.shape[1])
        moments.add(scaled, labels[0, :128].astype(np.float64))
        fit = output_layer.ridge_gcv(moments)
        np.testing.assert_allclose(outputs[:, 0], scaled @ fit.w + fit.b, rtol=1e-4, atol=1e-4)
    else:
        g = int(n_groups[0])
        reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(scaled, labels[0, :128])
        logits = outputs[:, :g] / 0.8
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(proba / proba.sum(axis=1, keepdims=True), reference.predict_proba(scaled), atol=1e-4)
    for generated, start in zip(layers[:-1], started[:-1], strict=True):  # the hidden layers are the generated ones
        np.testing.assert_array_equal(np.asarray(generated[1]), start[1])
