"""The ensemble plan of a MotherNetClassifier: which rows, columns and classes each member sees.

Pure NumPy functions of a `numpy.random.Generator`; `member_generation` turns the plan into padded
arrays and generates the members in batched calls. A member is the reference's ensemble member
(feature rotation, label shift, quantile transform or not, one-hot or ordinal categorical codes),
plus what the reference refuses to do:

- more than `max_features` encoded columns: the member keeps the `max_features // 2` columns with the
  highest univariate ANOVA F-score, and fills the rest with a random draw from the others;
- more than `max_classes` classes: the member sees class *groups* (`class_groupings`);
- one-vs-rest (`one_vs_rest=True`, k > 2): every member sees a binary task, one class against the
  others, `n_estimators` members per class;
- more than `max_train_rows` rows: the member reads a stratified subsample;
- `finetune_pool`: the rows its fine-tuning fits (and holds out from) are its own stratified sample
  of that many training rows, not its context rows (`MemberPlan.tuning_rows`).

Regression (`plan_regression_members`): the same members without classes. The rows are stratified
by quantile bins of the target (`target_bins`: 10 bins of about equal counts, so that a subsample
keeps the target's spread, its tails included), the column ranking scores the columns against
those bins, and there is no label shift (one output unit).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from mothernet_jax.runtime.encoding import INDICATOR, ONEHOT, ORDINAL, QUANTILE, RAW, FeatureEncoder


@dataclasses.dataclass(frozen=True)
class MemberPlan:
    """What one member sees. columns: (d,) encoded-column indices in the member's order (rotated);
    rows: (n,) training-row indices, its context; groups: (k,) the member's output unit for each
    class; tuning_rows: the training-row indices its fine-tuning fits and holds out from (None:
    its context rows)."""

    columns: np.ndarray
    rows: np.ndarray
    groups: np.ndarray
    n_groups: int
    quantile: bool
    onehot: bool
    feature_shift: int
    label_shift: int
    tuning_rows: np.ndarray | None = None

    @property
    def fine_tuning_rows(self) -> np.ndarray:
        """The rows the member's fine-tuning reads: tuning_rows, else its context rows."""
        return self.rows if self.tuning_rows is None else self.tuning_rows


# -- classes -------------------------------------------------------------------------------------


def group_moduli(n_classes: int, max_classes: int) -> list[int]:
    """Group counts m_1, m_2, ... <= max_classes whose least common multiple reaches n_classes.

    Classes numbered 0..k-1 and grouped by c mod m_j are told apart by at least one modulus when
    k <= lcm(m_1, m_2, ...) (Chinese remainder theorem). 10 classes per member: [10] up to 10
    classes, [10, 9] up to 90, [10, 9, 7] up to 630, [10, 9, 7, 8] up to 2520.
    """
    moduli, period = [], 1
    while period < n_classes:
        best = max(range(2, max_classes + 1), key=lambda m: (math.lcm(period, m), m))
        if math.lcm(period, best) == period:
            raise ValueError(
                f"{n_classes} classes cannot be told apart by groups of at most {max_classes}; "
                f"this model handles at most {period} classes"
            )
        moduli.append(best)
        period = math.lcm(period, best)
    return moduli


def class_groupings(
    n_classes: int, n_members: int, max_classes: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, int]]:
    """Per member, for k > max_classes: (groups (k,) int, n_groups), an error-correcting output code.

    Members come in rounds of len(moduli); a round draws one random permutation pi of the classes
    and its j-th member groups class c as pi(c) mod m_j, so each member sees at most max_classes
    balanced groups and every pair of classes is separated by some member of every complete round.
    """
    moduli = group_moduli(n_classes, max_classes)
    out = []
    for m in range(n_members):
        digit = m % len(moduli)
        if digit == 0:
            permutation = rng.permutation(n_classes)
        out.append((permutation % moduli[digit], moduli[digit]))
    return out


def draw_shifts(n_features: int, n_classes: int, taken: set, rng: np.random.Generator) -> tuple[int, int]:
    """A (feature rotation, label shift) pair not in `taken` (any pair once all are taken)."""
    pairs = n_features * n_classes
    free = [p for p in range(pairs) if divmod(p, n_classes) not in taken] if pairs <= 1 << 16 else []
    pair = divmod(int(rng.choice(free)) if free else int(rng.integers(pairs)), n_classes)
    taken.add(pair)
    return pair


def one_vs_rest_groups(n_classes: int, positive: int) -> np.ndarray:
    """(k,) groups of a one-vs-rest member: 1 for the class `positive`, 0 for every other class."""
    return (np.arange(n_classes) == positive).astype(np.int64)


def n_members_needed(n_classes: int, n_estimators: int, max_classes: int, one_vs_rest: bool = False) -> int:
    """n_estimators (per class for one-vs-rest), raised to one complete round of class groupings
    when k > max_classes."""
    if one_vs_rest and n_classes > 2:
        return n_estimators * n_classes
    if n_classes <= max_classes:
        return n_estimators
    return max(n_estimators, len(group_moduli(n_classes, max_classes)))


# -- rows and columns ------------------------------------------------------------------------------


def stratified_rows(y: np.ndarray, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """A sorted subsample of about n_rows row indices with the class proportions of y and at least
    one row of every class (largest-remainder allocation)."""
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n_rows / len(y))
    quota = np.clip(np.floor(exact).astype(np.int64), 1, counts)
    remainder = exact - np.floor(exact)
    for c in np.argsort(-remainder, kind="stable"):
        if quota.sum() >= n_rows:
            break
        quota[c] = min(quota[c] + 1, counts[c])
    for c in np.argsort(-quota, kind="stable"):  # the minimum of one row can overshoot
        excess = quota.sum() - n_rows
        if excess <= 0:
            break
        quota[c] -= min(excess, quota[c] - 1)
    rows = [
        rng.choice(np.flatnonzero(y == cls), q, replace=False) for cls, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(rows))


def candidate_columns(encoder: FeatureEncoder, *, quantile: bool, onehot: bool) -> np.ndarray:
    """Encoded-column indices a member reads, in raw-column order: numeric columns raw or through
    quantiles, categorical ones one-hot (where they have a one-hot block) or ordinal."""
    kinds, sources = encoder.layout()
    wanted = kinds == (QUANTILE if quantile else RAW)
    if onehot:
        onehot_sources = encoder.categorical[encoder.onehot]
        wanted |= kinds == ONEHOT
        wanted |= (kinds == ORDINAL) & ~np.isin(sources, onehot_sources)
    else:
        wanted |= kinds == ORDINAL
    columns = np.flatnonzero(wanted)
    return columns[np.argsort(sources[columns], kind="stable")]


def select_columns(
    candidates: np.ndarray, scores: np.ndarray, max_features: int, rng: np.random.Generator
) -> np.ndarray:
    """At most max_features of the candidates, in their order: the best half by score, the rest at
    random."""
    if len(candidates) <= max_features:
        return candidates
    n_best = max_features // 2
    ranked = np.argsort(-scores[candidates], kind="stable")
    chosen = ranked[:n_best]
    chosen = np.concatenate([chosen, rng.choice(ranked[n_best:], max_features - n_best, replace=False)])
    return candidates[np.sort(chosen)]


def f_scores(encoded: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ANOVA F-score of every encoded column against the labels; 0 for constant columns."""
    from sklearn.feature_selection import f_classif

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, _ = f_classif(encoded, y)
    return np.nan_to_num(scores, nan=0.0, posinf=np.finfo(np.float64).max)


# -- the plan -------------------------------------------------------------------------------------


def plan_members(
    encoder: FeatureEncoder,
    encoded: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    n_estimators: int,
    max_train_rows: int | None,
    max_features: int,
    max_classes: int,
    rng: np.random.Generator,
    one_vs_rest: bool = False,
    label_shifts: bool = True,
    finetune_pool: int | None = None,
) -> list[MemberPlan]:
    """The members of an ensemble over the encoded training table (n, n_columns) and labels y (n,)
    in 0..n_classes-1.

    Member 0 is the reference configuration: no rotation, no label shift, raw numeric columns,
    ordinal categorical codes. Members 1, 2, ... cycle through (quantile, one-hot) x (on, off)
    (one-hot only where some column has a one-hot block) and draw a feature rotation and a label
    shift (mod k), a pair that no earlier member of the same variant has while pairs remain. Rows, columns and classes are then cut to the model's limits as the module says.

    one_vs_rest (k > 2): member m is binary, class m % k against the others; the members of round
    m // k (one per class) share a variant, round 0 being the reference configuration, and each
    member of a later round draws its own rotation and label flip.

    label_shifts=False: no member shifts its labels (only feature rotations are drawn), for
    `plan_regression_members`, whose "classes" are bins of the target.

    finetune_pool: each member's fine-tuning rows (`MemberPlan.tuning_rows`), its own stratified
    sample of this many rows (all rows where there are no more); None: its context rows.
    """
    one_vs_rest = one_vs_rest and n_classes > 2
    has_onehot = bool(encoder.onehot.any())
    variants = [(q, o) for q in (True, False) for o in ((True, False) if has_onehot else (False,))]
    n_members = n_members_needed(n_classes, n_estimators, max_classes, one_vs_rest)
    grouped = n_classes > max_classes and not one_vs_rest
    n_labels = 2 if one_vs_rest else 1 if grouped or not label_shifts else n_classes  # what a label shift cycles over
    groupings = class_groupings(n_classes, n_members, max_classes, rng) if grouped else None
    kinds, sources = encoder.layout()
    scores = None
    taken: dict[tuple, set] = {}  # (rotation, label shift) pairs per variant (and class)
    members = []
    for m in range(n_members):
        round_ = m // n_classes if one_vs_rest else m
        quantile, onehot = (False, False) if round_ == 0 else variants[(round_ - 1) % len(variants)]
        columns = candidate_columns(encoder, quantile=quantile, onehot=onehot)
        if len(columns) > max_features:
            scores = f_scores(encoded, y) if scores is None else scores
            columns = select_columns(columns, scores, max_features, rng)
        room = max_features - len(columns)
        used_numeric = sources[columns][np.isin(kinds[columns], (RAW, QUANTILE))]
        indicators = np.flatnonzero((kinds == INDICATOR) & np.isin(sources, used_numeric))[:room]
        columns = np.concatenate([columns, indicators])
        shift, label_shift = (0, 0)
        if round_ > 0:
            key = (quantile, onehot, m % n_classes if one_vs_rest else 0)
            pool = taken.setdefault(key, set() if quantile or onehot else {(0, 0)})  # round 0 took (0, 0)
            shift, label_shift = draw_shifts(len(columns), n_labels, pool, rng)
        rows = np.arange(len(y))
        if max_train_rows is not None and len(y) > max_train_rows:
            rows = stratified_rows(y, max_train_rows, rng)
        tuning = None
        if finetune_pool is not None:
            tuning = np.arange(len(y)) if len(y) <= finetune_pool else stratified_rows(y, finetune_pool, rng)
        if one_vs_rest:
            groups, n_groups = (one_vs_rest_groups(n_classes, m % n_classes) + label_shift) % 2, 2
        elif grouped:
            groups, n_groups = groupings[m]
        else:
            groups, n_groups = (np.arange(n_classes) + label_shift) % n_classes, n_classes
        columns = np.roll(columns, -shift)
        members.append(
            MemberPlan(columns, rows, groups, n_groups, quantile, onehot, shift, label_shift, tuning)
        )
    return members


# -- regression -----------------------------------------------------------------------------------

TARGET_BINS = 10  # quantile bins of a regression target for stratified rows and column scores


def target_bins(y: np.ndarray, n_bins: int = TARGET_BINS) -> np.ndarray:
    """(n,) int codes 0..b-1 of y's quantile bins, b <= n_bins bins of about equal counts (fewer
    where values tie across a quantile), numbered in the order of y."""
    y = np.asarray(y, dtype=np.float64)
    edges = np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(np.searchsorted(edges, y, side="right"), return_inverse=True)[1].reshape(-1)


def plan_regression_members(
    encoder: FeatureEncoder,
    encoded: np.ndarray,
    y: np.ndarray,
    *,
    n_estimators: int,
    max_train_rows: int | None,
    max_features: int,
    rng: np.random.Generator,
    finetune_pool: int | None = None,
) -> list[MemberPlan]:
    """The members of a regression ensemble over the encoded training table (n, n_columns) and the
    float target y (n,): `plan_members` on y's quantile bins (`target_bins`; at most max_train_rows
    bins, so that a stratified subsample holds every bin) without label shifts, the fine-tuning
    rows as it draws them (finetune_pool). Each plan has groups (0,) and n_groups 1: one output
    unit."""
    n_bins = TARGET_BINS if max_train_rows is None else max(1, min(TARGET_BINS, max_train_rows))
    bins = target_bins(y, n_bins)
    n_classes = int(bins.max()) + 1
    plans = plan_members(
        encoder,
        encoded,
        bins,
        n_classes=n_classes,
        n_estimators=n_estimators,
        max_train_rows=max_train_rows,
        max_features=max_features,
        max_classes=max(n_classes, 1),
        rng=rng,
        label_shifts=False,
        finetune_pool=finetune_pool,
    )
    return [dataclasses.replace(p, groups=np.zeros(0, np.int64), n_groups=1) for p in plans]
