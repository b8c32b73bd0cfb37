"""The levers map: its settings mean the same whatever the weights recommend, its report ranks by
mean AUC against median fit time with the ratio to gradient boosting, and it reads no test set."""

import math

from shared_data import DATASETS, needs_datasets

from mothernet_jax.benchmarks import levers
from mothernet_jax.evaluation import TABPFN_TEST
from mothernet_jax.settings import CLASSIFIER, LIBRARY_DEFAULTS


def record(method, dataset, auc, fit, predict=0.01):
    return {"dataset": dataset, "method": method, "status": "ok", "auc": auc, "fit_seconds": fit,
            "predict_seconds": predict}  # fmt: skip


def test_every_setting_names_every_recommendable_setting_explicitly():
    assert set(levers.BASE) == set(CLASSIFIER)
    assert {k: v for k, v in levers.BASE.items() if k not in levers.MAP_BASE}.items() <= LIBRARY_DEFAULTS.items()
    assert (levers.BASE["n_estimators"], levers.BASE["max_train_rows"], levers.BASE["output_layer"]) == (
        8, 1024, "generated")  # the map's origin, whatever the library's defaults  # fmt: skip
    for name, setting in levers.SETTINGS.items():
        assert set(setting) <= set(CLASSIFIER), name
    clf = levers.factory(levers.SETTINGS["ovr<=10 4x256 ft100 es"])([False, False], 0)
    params = clf.get_params()
    assert all(params[k] != "auto" for k in CLASSIFIER)
    assert (params["multiclass"], params["max_members"], params["n_estimators"], params["max_train_rows"]) == (
        "one_vs_rest", 10, 4, 256)  # fmt: skip
    assert (params["finetune_steps"], params["finetune_holdout"], params["finetune_learning_rate"]) == (100, 0.2, 1e-3)


def test_summary_means_medians_ratios_and_the_pareto_front():
    records = [
        record("hist_gradient_boosting", "a", 0.80, 0.10), record("hist_gradient_boosting", "b", 0.70, 0.30),
        record("fast", "a", 0.70, 0.05), record("fast", "b", 0.60, 0.05),
        record("good", "a", 0.90, 0.20), record("good", "b", 0.80, 0.40),
        record("slow_worse", "a", 0.70, 1.0), record("slow_worse", "b", 0.70, 1.0),
        record("only_a", "a", 0.99, 0.01),  # a method missing a dataset does not shrink the others' set
    ]  # fmt: skip
    rows = {r["method"]: r for r in levers.summarise(records[:-1])}
    assert math.isclose(rows["good"]["auc"], 0.85) and math.isclose(rows["good"]["fit"], 0.30)
    assert math.isclose(rows["good"]["fit_ratio"], 0.30 / 0.20)
    assert rows["fast"]["pareto"] and rows["good"]["pareto"]
    assert rows["hist_gradient_boosting"]["pareto"]  # nothing better at 0.2 s or less
    assert not rows["slow_worse"]["pareto"]  # "good" is better and faster
    assert {r["datasets"] for r in levers.summarise(records)} == {1}  # only the datasets all methods scored


@needs_datasets
def test_the_map_reads_no_tabpfn_test_dataset():
    paths = levers.validation_paths([DATASETS])
    assert len(paths) == 18 and not {p.stem for p in paths} & set(TABPFN_TEST)
