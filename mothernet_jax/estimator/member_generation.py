"""The ensemble's children, generated in chunks of a fixed size so that memory stays bounded.

`generate_children(params, config, encoded, y, plans)` turns the members planned by
`plan.plan_members` into `runtime.child.Child`ren. Members go through the hypernetwork
`members_per_call` at a time: every call has the same shapes (the last chunk is padded with copies
of a real member, whose outputs are dropped), so one fit compiles once, its peak memory is that of
one chunk whatever the number of classes and members, and its time grows linearly with the
members. The chunk holds at most `MEMBER_ROWS_PER_CALL` padded training rows (8 members of 1,024
rows; 64 of 128): the transformer's activations, the largest buffers, grow with members x rows.

Regression (a config whose `task` is "regression"): y is the float target, and each member reads
its own rows' target standardised over those rows (`member_target_scales`), so its child predicts
the member-standardised target; the estimator maps each member's predictions back with its
member's mean and std.
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from mothernet_jax.config import ModelConfig
from mothernet_jax.estimator.finetune import Finetune, finetune_children
from mothernet_jax.estimator.output_layer import start_output_layers
from mothernet_jax.estimator.plan import MemberPlan
from mothernet_jax.generation import bucket_rows, generate_batch
from mothernet_jax.runtime.child import Child

MEMBER_ROWS_PER_CALL = 8 * 1024  # members x padded training rows per jitted call
# float32 attention matrices (members x heads x rows^2) alive at once at the peak of a generation
# call: fitted to the measured process peaks of one member of `small` (3 heads): 17.1 GiB at 20,000
# rows (estimate 18.2), 1.70 GiB at 6,000 (estimate 1.67)
ATTENTION_BUFFERS = 4


# -- the jitted work: one chunk of members at once ----------------------------------------------------


def member_layers(params, X, y, n_rows, n_features, *, config: ModelConfig):
    """The children of B members in one forward pass (pure; jit it with a static config).

    X: (B, T, F <= max_features) encoded columns (no NaN), zero beyond n_rows / n_features;
    y: (B, T) int output groups; n_rows, n_features: (B,) int.
    Returns (layers, mean, std) in data space, every leaf with a leading B: layers as
    `runtime.child.factored_logits` takes them, the low-rank factors kept apart (W_l = A_l S_l, the 100/d
    scaling folded into A_1, rows beyond n_features zero); mean, std: (B, F). This is
    `generation.generate_batch(factored=True)`: not multiplying the factors out makes prediction
    with the `paper` child about four times cheaper.
    """
    child = generate_batch(params, X, y, n_rows, n_features, config=config, factored=True)
    return child.layers, child.mean, child.std


generate_members = jax.jit(member_layers, static_argnames=("config",))




# -- memory ---------------------------------------------------------------------------------------


def peak_bytes(members: int, padded_rows: int, config: ModelConfig) -> int:
    """Estimated peak memory of one generation call of `members` members with `padded_rows`
    training rows each: the attention matrices (`ATTENTION_BUFFERS` x members x heads x rows^2
    float32), which grow with rows squared, plus the row activations of one layer."""
    attention = ATTENTION_BUFFERS * members * config.n_heads * padded_rows**2 * 4
    activations = 4 * members * padded_rows * (8 * config.embed_dim + 2 * config.ffn_dim)
    return attention + activations


def available_memory() -> int | None:
    """Bytes free for a generation call: the accelerator's free memory, or on CPU the host's
    available memory (/proc/meminfo's MemAvailable); None where it cannot be read."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(
    plans: list[MemberPlan], config: ModelConfig, setting: str, member_rows: int = MEMBER_ROWS_PER_CALL
) -> None:
    """MemoryError, in one line naming `setting` (the parameter that sets the rows, e.g.
    "max_train_rows=None"), when a generation call of these members would need more memory than
    is available (`peak_bytes`, `available_memory`), and a UserWarning naming it when it would
    take more than half: checked before anything is allocated."""
    rows = max(len(p.rows) for p in plans)
    padded = bucket_rows(rows)
    need = peak_bytes(members_per_call(len(plans), padded, member_rows), padded, config)
    have = available_memory()
    if have is not None and need > have:
        raise MemoryError(
            f"{setting}: generating with {rows:,} training rows per member needs about "
            f"{need / 2**30:.1f} GiB (attention grows with rows squared), but {have / 2**30:.1f} GiB "
            "are available; set max_train_rows lower (the default, 1024, subsamples rows per member)"
        )
    if have is not None and need > have / 2:
        warnings.warn(
            f"{setting}: generating with {rows:,} training rows per member needs about "
            f"{need / 2**30:.1f} GiB of the {have / 2**30:.1f} GiB available (attention grows with rows "
            "squared); set max_train_rows lower to use less",
            UserWarning,  # shown by default (a ResourceWarning is not)
            stacklevel=3,
        )


# -- chunks ---------------------------------------------------------------------------------------


def members_per_call(n_members: int, padded_rows: int, member_rows: int = MEMBER_ROWS_PER_CALL) -> int:
    """How many members one jitted call generates: at most member_rows // padded_rows (at least 1),
    balanced so that the chunks of n_members are as even as possible (the last chunk's padding is
    smaller than the number of calls)."""
    largest = max(1, member_rows // padded_rows)
    calls = -(-n_members // largest)
    return -(-n_members // calls)


def is_regression(config: ModelConfig) -> bool:
    """Whether the config's model regresses (`ModelConfig.task == "regression"`)."""
    return getattr(config, "task", "classification") == "regression"


def member_target_scales(y: np.ndarray, plans: list[MemberPlan]) -> tuple[np.ndarray, np.ndarray]:
    """Regression: (mean, std) (members,) float64 of each member's training rows' target (population
    std; 1 where those rows hold one value, so that the member predicts their mean)."""
    y = np.asarray(y, np.float64)
    mean = np.array([y[p.rows].mean() for p in plans])
    std = np.array([y[p.rows].std() for p in plans])
    return mean, np.where(std > 0, std, 1.0)


def _member_arrays(
    encoded, y, plans: list[MemberPlan], rows: int, width: int, regression: bool = False, tuning: bool = False
):
    """The padded inputs of some members: X (B, rows, width), labels (B, rows) (regression: the
    target standardised by the member's context rows), n_rows, n_features, n_groups (B,); of each
    member's context rows, or (tuning) of the rows its fine-tuning reads."""
    X = np.zeros((len(plans), rows, width), np.float32)
    labels = np.zeros((len(plans), rows), np.float32 if regression else np.int32)
    scales = member_target_scales(y, plans) if regression else None
    row_sets = [p.fine_tuning_rows if tuning else p.rows for p in plans]
    for m, (plan, taken) in enumerate(zip(plans, row_sets, strict=True)):
        X[m, : len(taken), : len(plan.columns)] = encoded[np.ix_(taken, plan.columns)]
        if regression:
            labels[m, : len(taken)] = (y[taken] - scales[0][m]) / scales[1][m]
        else:
            labels[m, : len(taken)] = plan.groups[y[taken]]
    n_rows = np.array([len(r) for r in row_sets], np.int32)
    n_features = np.array([len(p.columns) for p in plans], np.int32)
    n_groups = np.array([p.n_groups for p in plans], np.int32)
    return X, labels, n_rows, n_features, n_groups


def keep_factors(layer) -> tuple:
    """A layer as the cheaper of its two forms: (A, S) costs r (in + out) per row, W in x out."""
    weight, bias = layer
    if isinstance(weight, tuple):
        a, s = weight
        if a.shape[1] * (a.shape[0] + s.shape[1]) >= a.shape[0] * s.shape[1]:
            weight = a @ s
    return weight, bias


def _children(layers, mean, std, plans: list[MemberPlan]) -> list[Child]:
    """Slice the batched NumPy outputs of a chunk into one child per plan (padding dropped)."""
    children = []
    for m, plan in enumerate(plans):
        member = [
            jax.tree_util.tree_map(lambda a, m=m: np.asarray(a[m], np.float32), layer) for layer in layers
        ]
        d, g = len(plan.columns), plan.n_groups
        weight, bias = member[0]  # drop the zero rows of the padding columns
        member[0] = ((weight[0][:d], weight[1]) if isinstance(weight, tuple) else weight[:d], bias)
        weight, bias = member[-1]  # keep the member's output groups (the output layer is dense)
        member[-1] = (weight[:, :g], bias[:g])
        children.append(Child(tuple(keep_factors(layer) for layer in member), mean[m, :d], std[m, :d]))
    return children


def generate_children(
    params,
    config: ModelConfig,
    encoded: np.ndarray,
    y: np.ndarray,
    plans: list[MemberPlan],
    *,
    finetune: Finetune | None = None,
    temperature: float = 0.8,
    member_rows: int = MEMBER_ROWS_PER_CALL,
    rng: np.random.Generator | None = None,
    refit: bool = False,
) -> list[Child]:
    """One child per plan, generated (and fine-tuned) in chunks of `members_per_call` members.

    encoded: (n, n_columns) the encoded training table; y: (n,) int class codes (regression: the
    float target; each child then predicts its member's standardised target, see
    `member_target_scales`, and fine-tunes on the squared error); plans: the
    members (`plan.plan_members`). finetune.steps > 0: fine-tune each child on its member's
    rows (`MemberPlan.fine_tuning_rows`: its context rows, or its own sample of the training rows;
    softmax(logits / temperature); `finetune.Finetune`), its random draws (held-out rows, row
    subsets) from `rng` (None: seed 0); refit (the read-out is refitted afterwards): fine-tuning
    starts, for a child whose generated read-out does worse than a guess on those rows, from the
    read-out fitted on them (`output_layer.start_output_layers`). member_rows
    bounds members x padded rows per call. Returns the children in data space, NumPy float32, sliced to each member's columns and
    output groups; the same (to float tolerance) whatever the chunk size.
    """
    rows = bucket_rows(max(len(p.rows) for p in plans))
    chunk = members_per_call(len(plans), rows, member_rows)
    children: list[Child] = []
    rng = np.random.default_rng(0) if rng is None else rng
    regression = is_regression(config)
    tuning = finetune is not None and finetune.steps > 0 and any(p.tuning_rows is not None for p in plans)
    tuning_rows = bucket_rows(max(len(p.fine_tuning_rows) for p in plans)) if tuning else rows
    for start in range(0, len(plans), chunk):
        real = plans[start : start + chunk]
        padded = real + [real[0]] * (chunk - len(real))  # same shapes in every call: one compile
        X, labels, n_rows, n_features, n_groups = _member_arrays(
            encoded, y, padded, rows, config.max_features, regression
        )
        layers, mean, std = generate_members(params, X, labels, n_rows, n_features, config=config)
        if finetune is not None and finetune.steps:
            if tuning:  # the rows the fine-tuning reads are not the context
                X, labels, n_rows, _, n_groups = _member_arrays(
                    encoded, y, padded, tuning_rows, config.max_features, regression, tuning=True
                )
            if refit:
                layers, _ = start_output_layers(
                    layers, mean, std, X, labels, n_rows, n_groups, temperature=temperature, regression=regression
                )
            layers = finetune_children(
                layers, mean, std, X, labels, n_rows, n_groups, finetune=finetune, temperature=temperature, rng=rng,
                loss="mse" if regression else "cross_entropy",
            )
        layers, mean, std = jax.device_get((layers, mean, std))
        children.extend(_children(layers, mean, std, real))
    return children
