"""The main job on the shipped weights: classify a real dataset, next to gradient boosting.

    python -m mothernet_jax.demo [--dataset breast_cancer|wine|digits] [--n-estimators N]

Uses a dataset that ships inside scikit-learn (no network), splits it in half, fits
`MotherNetClassifier()` with the shipped weights and the settings they recommend (every setting
"auto"; --n-estimators overrides one) and scikit-learn's HistGradientBoostingClassifier,
and prints ROC AUC, accuracy, fit and predict seconds for both, with the backend and device.
"first fit s" includes MotherNet's JIT compilation; "fit s" is a second fit on the same data, after
that warm-up (both methods are timed the same way).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "digits": datasets.load_digits,
}


def _auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    if proba.shape[1] == 2:
        return roc_auc_score(y_true, proba[:, 1])
    return roc_auc_score(y_true, proba, multi_class="ovr")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="breast_cancer")
    parser.add_argument(
        "--n-estimators", type=int, default=None,
        help="MotherNet ensemble members (default: what the weights recommend)",
    )
    parser.add_argument("--weights", default=None, help="weight file (default: the shipped weights)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def methods(args: argparse.Namespace) -> dict:
    """The two classifiers the demo compares: `MotherNetClassifier()` (the weights' settings, but
    what the command line sets) and gradient boosting."""
    from mothernet_jax.estimator.classifier import MotherNetClassifier

    return {
        "MotherNet": MotherNetClassifier(
            weights=args.weights,
            n_estimators="auto" if args.n_estimators is None else args.n_estimators,
            random_state=args.seed,
        ),
        "HistGradientBoosting": HistGradientBoostingClassifier(random_state=args.seed),
    }


def main(argv=None) -> None:
    args = parser().parse_args(argv)

    import jax

    from mothernet_jax.pretrained import load_info

    X, y = LOADERS[args.dataset](return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=args.seed
    )
    print(
        f"dataset {args.dataset}: {len(X_train)} training rows, {len(X_test)} test rows, "
        f"{X.shape[1]} features, {len(np.unique(y))} classes"
    )
    print(f"backend={jax.default_backend()} device={jax.devices()[0].device_kind}")
    if args.weights is None:
        info = load_info()
        steps = info.get("total_steps", info.get("steps"))  # all training phases, where recorded
        seen = info.get("total_datasets_seen", info.get("datasets_seen"))
        steps, seen = (f"{v:,}" if isinstance(v, int) else "?" for v in (steps, seen))
        print(f"shipped weights: {steps} optimiser steps, {seen} datasets seen, sha256 {info['sha256'][:12]}")

    compared = methods(args)
    print(
        f"{'method':22s} {'ROC AUC':>8s} {'accuracy':>9s} {'first fit s':>12s} {'fit s':>8s} {'predict s':>10s}"
    )
    for name, model in compared.items():
        start = time.perf_counter()
        model.fit(X_train, y_train)  # warm-up: MotherNet compiles for this shape
        first_fit_s = time.perf_counter() - start
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        model.predict_proba(X_test[:5])  # warm-up: compilation is not prediction
        start = time.perf_counter()
        proba = model.predict_proba(X_test)
        predict_s = time.perf_counter() - start
        accuracy = accuracy_score(y_test, model.classes_[proba.argmax(axis=1)])
        print(
            f"{name:22s} {_auc(y_test, proba):8.4f} {accuracy:9.4f} {first_fit_s:12.3f} {fit_s:8.3f} "
            f"{predict_s:10.4f}"
        )
    print("first fit s includes JIT compilation (the first fit of a shape); fit s is a second fit, warm")
    chosen = compared["MotherNet"].settings_
    shown = ("n_estimators", "max_train_rows", "output_layer")
    print("MotherNetClassifier settings: " + ", ".join(f"{k}={chosen[k]}" for k in shown))


if __name__ == "__main__":
    main()
