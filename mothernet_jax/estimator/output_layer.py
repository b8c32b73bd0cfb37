"""The children's output layer fitted at fit time in closed form on their hidden features.

`output_layer="ridge"` (the regressor): every member's child keeps the hidden layers it was
generated with; its output layer becomes the ridge regression of the member-standardised target on
the child's last hidden layer, over every training row (not only the member's context rows), with
an unpenalised intercept and the penalty chosen per member by generalised cross-validation (GCV,
Golub, Heath and Wahba 1979) over `RELATIVE_PENALTIES` times the largest eigenvalue of the hidden
features' covariance. The generated hidden layers are a data-dependent feature map; the last layer
on top of them is a convex problem with an exact solution, so the fit costs one pass over the rows
per member and no optimiser steps.

The statistics (the hidden features' Gram matrix and their products with the target) are summed
in blocks of `ROW_BLOCK` rows, so memory does not grow with the rows, and the solution is the same
for any block size to rounding. NumPy, float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mothernet_jax.child import Child, factored_logits, standardise_rows

ROW_BLOCK = 8192
# the GCV grid, relative to the largest eigenvalue of the centred hidden features' Gram matrix
RELATIVE_PENALTIES = np.logspace(-5, 2, 15)


class RidgeFit(NamedTuple):
    """w (P,), b: the output layer; penalty: the chosen ridge penalty; gcv: its GCV score."""

    w: np.ndarray
    b: float
    penalty: float
    gcv: float


def hidden_features(child: Child, x: np.ndarray) -> np.ndarray:
    """The child's last hidden layer (relu applied) on raw rows x (n, d) -> (n, P) float64."""
    def to64(weight):
        return tuple(np.asarray(f, np.float64) for f in weight) if isinstance(weight, tuple) else np.asarray(
            weight, np.float64
        )

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z = standardise_rows(np.asarray(x, np.float32), child.mean, child.std, np)
    hidden = tuple((to64(w), np.asarray(b, np.float64)) for w, b in child.layers[:-1])
    return np.maximum(factored_logits(hidden, z.astype(np.float64), np), 0.0)


class Moments:
    """Sums over rows of a feature matrix H (n, P) and a target t (n,): n, sum H, H^T H, H^T t,
    sum t, sum t^2; added block by block."""

    def __init__(self, width: int):
        self.n = 0
        self.h = np.zeros(width)
        self.hh = np.zeros((width, width))
        self.ht = np.zeros(width)
        self.t = 0.0
        self.tt = 0.0

    def add(self, features: np.ndarray, target: np.ndarray) -> None:
        self.n += len(target)
        self.h += features.sum(axis=0)
        self.hh += features.T @ features
        self.ht += features.T @ target
        self.t += float(target.sum())
        self.tt += float(target @ target)


def ridge_gcv(moments: Moments, penalties: np.ndarray | None = None) -> RidgeFit:
    """The ridge regression of t on H with an intercept, its penalty the GCV-best of `penalties`
    (default: `RELATIVE_PENALTIES` times the largest eigenvalue of the centred Gram matrix).

    GCV(a) = (RSS(a) / n) / (1 - (df(a) + 1) / n)^2 with df(a) = sum l / (l + a) over the centred
    Gram matrix's eigenvalues l (the intercept counts one); penalties whose df leave no residual
    degree of freedom are skipped (the largest is taken when none is left). Features that never
    vary (dead relu units) get weight 0."""
    n = moments.n
    mean_h = moments.h / n
    gram = moments.hh - n * np.outer(mean_h, mean_h)
    cross = moments.ht - mean_h * moments.t
    total = max(moments.tt - moments.t**2 / n, 0.0)
    eigenvalues, vectors = np.linalg.eigh((gram + gram.T) / 2)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    top = float(eigenvalues.max(initial=0.0))
    if top <= 0.0:  # no feature varies: the intercept alone
        return RidgeFit(np.zeros(len(mean_h)), moments.t / n, np.inf, np.nan)
    penalties = RELATIVE_PENALTIES * top if penalties is None else np.asarray(penalties, np.float64)
    projected = vectors.T @ cross
    best = None
    for penalty in penalties:
        shrink = eigenvalues + penalty
        rss = max(total - float(np.sum(projected**2 * (eigenvalues + 2 * penalty) / shrink**2)), 0.0)
        left = 1.0 - (float(np.sum(eigenvalues / shrink)) + 1.0) / n
        score = (rss / n) / left**2 if left > 0 else np.inf
        if best is None or score < best[0] or (not np.isfinite(best[0]) and penalty > best[1]):
            best = (score, float(penalty))
    score, penalty = best
    w = vectors @ (projected / (eigenvalues + penalty))
    return RidgeFit(w, float(moments.t / n - mean_h @ w), penalty, score)


def ridge_output_layers(
    children: list[Child],
    encoded: np.ndarray,
    columns: list[np.ndarray],
    y: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
    *,
    row_block: int = ROW_BLOCK,
) -> list[Child]:
    """The children with their output layer refitted by `ridge_gcv` on every row of `encoded`
    (n, n_columns), member m reading `encoded[:, columns[m]]` and predicting
    (y - target_mean[m]) / target_std[m]. The hidden layers, mean and std are kept; the new output
    layer is dense float32 (P, 1)."""
    y = np.asarray(y, np.float64)
    refitted = []
    for m, (child, cols) in enumerate(zip(children, columns, strict=True)):
        moments = Moments(_hidden_width(child))
        for start in range(0, len(y), row_block):
            rows = slice(start, start + row_block)
            moments.add(hidden_features(child, encoded[rows][:, cols]), (y[rows] - target_mean[m]) / target_std[m])
        fit = ridge_gcv(moments)
        output = (fit.w[:, None].astype(np.float32), np.array([fit.b], np.float32))
        refitted.append(Child((*child.layers[:-1], output), child.mean, child.std))
    return refitted


def _hidden_width(child: Child) -> int:
    weight = child.layers[-1][0]
    return (weight[0] if isinstance(weight, tuple) else weight).shape[0]
