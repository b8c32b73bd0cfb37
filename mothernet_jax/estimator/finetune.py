"""Fine-tuning the generated children at fit time ("MotherNet + gradient descent"), its levers in
one place.

`Finetune` says how: Adam steps on each child's cross-entropy over its member's training rows,
all layers or the output layer only (a convex problem on the child's fixed hidden features),
optionally on a random subset of rows per step, and optionally stopped early on rows held out of
the fine-tuning: every step is scored on them and the child keeps the layers of its best step
(step 0, the child as generated, included), and stops after `PATIENCE` steps without a better one.
`finetune_layers` is the pure JAX function, vmapped over the members of a generation call. Its
loss is a parameter: the cross-entropy of a classifier's children, or (loss="mse") the squared
error of a regressor's one output unit against its member's standardised target.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mothernet_jax.child import factored_logits, standardise_rows

PATIENCE = 20  # early stopping: steps without a better held-out loss before a member stops
MIN_IMPROVEMENT = 1e-4  # a held-out loss lower by less than this is not better


@dataclasses.dataclass(frozen=True)
class Finetune:
    """steps: Adam steps (0: the children as generated); learning_rate: Adam's step size;
    layers: "all" or "output"; rows: training rows per step (None: all, full batch);
    holdout: share of each member's rows held out for early stopping (0: none, run all steps)."""

    steps: int = 0
    learning_rate: float = 1e-3
    layers: str = "all"
    rows: int | None = None
    holdout: float = 0.0

    def __post_init__(self):
        if self.layers not in ("all", "output"):
            raise ValueError(f"finetune_layers must be 'all' or 'output', got {self.layers!r}")
        if not 0.0 <= self.holdout <= 0.5:
            raise ValueError(f"finetune_holdout must lie in [0, 0.5], got {self.holdout!r}")


def holdout_masks(n_rows: np.ndarray, padded_rows: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """(B, padded_rows) bool: for member b, round(share * n_rows[b]) of its first n_rows[b] rows,
    drawn at random (none where that rounds to 0, or would leave fewer than 2 rows to fit on)."""
    masks = np.zeros((len(n_rows), padded_rows), bool)
    for b, n in enumerate(int(v) for v in n_rows):
        k = int(round(share * n))
        if k >= 1 and n - k >= 2:
            masks[b, rng.choice(n, k, replace=False)] = True
    return masks


def finetune_layers(
    layers, mean, std, X, y, n_rows, n_groups, holdout, keys, temperature, steps, learning_rate,
    *, output_only: bool, early_stopping: bool, batch_rows: int | None, loss: str = "cross_entropy",
):  # fmt: skip
    """The members' children after fine-tuning (pure; jit with static output_only).

    layers, mean, std: the children of B members as `member_generation.member_layers` returns them;
    X: (B, T, F) encoded rows; y: (B, T) output groups; n_rows, n_groups: (B,); holdout: (B, T) bool,
    rows kept out of the fitting and scored to stop early (a member with none runs all `steps`);
    keys: (B,) PRNG keys of the row subsets. loss (static): "cross_entropy", of
    softmax(logits / temperature) against y's int groups, or "mse", the squared error of the first
    output unit against y's floats (regression; temperature unused).
    Static: output_only (train the last layer only), early_stopping (False: holdout is ignored, no
    held-out scoring), batch_rows (None: every fitting row every step; else this many of them per
    step, drawn at random, gathered so that a step costs batch_rows rows).
    """
    optimizer = optax.adam(learning_rate)

    def one(layers, mean, std, x, y, n, g, held, key):
        z = standardise_rows(x, mean, std, jnp)
        in_data = jnp.arange(x.shape[0]) < n
        fit_rows = in_data & ~held
        held = in_data & held
        early = jnp.any(held) if early_stopping else jnp.bool_(False)
        frozen, trainable = (layers[:-1], layers[-1:]) if output_only else ((), layers)
        features = jnp.maximum(factored_logits(frozen, z, jnp), 0.0) if frozen else z
        features = jax.lax.stop_gradient(features)

        def row_losses(trainable, x, target):
            outputs = factored_logits(trainable, x, jnp)
            if loss == "mse":
                return (outputs[:, 0] - target) ** 2
            logits = jnp.where(jnp.arange(outputs.shape[-1])[None, :] < g, outputs / temperature, -1e30)
            return optax.softmax_cross_entropy_with_integer_labels(logits, target)

        def mean_loss(trainable, rows):
            per_row = row_losses(trainable, features, y)
            return jnp.sum(jnp.where(rows, per_row, 0.0)) / jnp.maximum(jnp.sum(rows), 1)

        def batch_loss(trainable, take, rows):
            per_row = row_losses(trainable, features[take], y[take])
            return jnp.sum(jnp.where(rows, per_row, 0.0)) / jnp.maximum(jnp.sum(rows), 1)

        def held_loss(trainable):
            return mean_loss(trainable, held)

        def cond(carry):
            i, _, _, _, _, since_best = carry
            return (i < steps) & (since_best < jnp.where(early, PATIENCE, steps + 1))

        def body(carry):
            i, trainable, state, best, best_loss, since_best = carry
            if batch_rows is None:
                grads = jax.grad(mean_loss)(trainable, fit_rows)
            else:  # batch_rows of the fitting rows at random (all of them, padded, when fewer)
                order = jnp.argsort(jnp.where(fit_rows, jax.random.uniform(jax.random.fold_in(key, i), fit_rows.shape), 2.0))
                take = order[:batch_rows]
                grads = jax.grad(batch_loss)(trainable, take, fit_rows[take])
            updates, state = optimizer.update(grads, state, trainable)
            trainable = optax.apply_updates(trainable, updates)
            current = -i.astype(jnp.float32)  # without early stopping every step is the best so far
            if early_stopping:
                current = jnp.where(early, held_loss(trainable), current)
            better = current < best_loss - MIN_IMPROVEMENT
            best = jax.tree_util.tree_map(lambda new, old: jnp.where(better, new, old), trainable, best)
            return i + 1, trainable, state, best, jnp.where(better, current, best_loss), jnp.where(better, 0, since_best + 1)

        start = jnp.where(early, held_loss(trainable), jnp.inf) if early_stopping else jnp.float32(jnp.inf)
        carry = (jnp.int32(0), trainable, optimizer.init(trainable), trainable, start, jnp.int32(0))
        best = jax.lax.while_loop(cond, body, carry)[3]
        return (*frozen, *best)

    return jax.vmap(one)(layers, mean, std, X, y, n_rows, n_groups, holdout, keys)


LOSSES = ("cross_entropy", "mse")

finetune_members = jax.jit(
    finetune_layers, static_argnames=("output_only", "early_stopping", "batch_rows", "loss")
)


def finetune_children(
    layers, mean, std, X, labels, n_rows, n_groups, *, finetune: Finetune, temperature: float, rng,
    loss: str = "cross_entropy",
):  # fmt: skip
    """`finetune_members` for one generation call from NumPy: draws the held-out rows and the keys of
    the row subsets from `rng` (a `numpy.random.Generator`). loss: one of LOSSES."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    holdout = holdout_masks(n_rows, X.shape[1], finetune.holdout, rng)
    keys = jax.random.split(jax.random.key(int(rng.integers(2**31 - 1))), len(n_rows))
    batch_rows = finetune.rows if finetune.rows is not None and finetune.rows < int(np.max(n_rows)) else None
    return finetune_members(
        layers, mean, std, X, labels, n_rows, n_groups, holdout, keys,
        np.float32(temperature), np.int32(finetune.steps), np.float32(finetune.learning_rate),
        output_only=finetune.layers == "output", early_stopping=bool(holdout.any()), batch_rows=batch_rows,
        loss=loss,
    )  # fmt: skip
