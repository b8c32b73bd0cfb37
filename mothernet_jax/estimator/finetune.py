"""Fine-tuning the generated children at fit time ("MotherNet + gradient descent"), its levers in
one place.

`Finetune` says how: Adam steps on each child's cross-entropy over its member's training rows,
all layers or the output layer only (a convex problem on the child's fixed hidden features),
optionally on a random subset of rows per step, and optionally stopped early on rows held out of
the fine-tuning: every `CHECK_EVERY` steps the children are scored on them, each keeps the layers
of its best check (step 0, the child as generated, included) and stops after `PATIENCE` steps
without a better one; the loop ends when every member has stopped. `finetune_layers` is the pure
JAX function over the members of a generation call (the steps vmapped, the loop shared, so the
checks are a real branch). Its
loss is a parameter: the cross-entropy of a classifier's children, or (loss="mse") the squared
error of a regressor's one output unit against its member's standardised target.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mothernet_jax.runtime.child import factored_logits, hidden_features, standardise_rows

PATIENCE = 20  # early stopping: steps without a better held-out loss before a member stops
CHECK_EVERY = 5  # early stopping scores the held-out rows every this many steps
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

    def row_losses(trainable, features, target, g):
        outputs = factored_logits(trainable, features, jnp)
        if loss == "mse":
            return (outputs[:, 0] - target) ** 2
        logits = jnp.where(jnp.arange(outputs.shape[-1])[None, :] < g, outputs / temperature, -1e30)
        return optax.softmax_cross_entropy_with_integer_labels(logits, target)

    def mean_loss(trainable, features, target, g, rows):
        per_row = row_losses(trainable, features, target, g)
        return jnp.sum(jnp.where(rows, per_row, 0.0)) / jnp.maximum(jnp.sum(rows), 1)

    def prepare(layers, mean, std, x, n, held):
        """A member's fixed inputs: the frozen layers, the trainable ones, the rows the trainable
        layers read (the hidden features for output_only), and its fitting and held-out rows."""
        z = standardise_rows(x, mean, std, jnp)
        in_data = jnp.arange(x.shape[0]) < n
        frozen, trainable = (layers[:-1], layers[-1:]) if output_only else ((), layers)
        features = hidden_features(layers, z, jnp) if output_only else z
        return frozen, trainable, jax.lax.stop_gradient(features), in_data & ~held, in_data & held

    def gradient(trainable, features, target, g, fit_rows, key, i):
        if batch_rows is None:
            return jax.grad(mean_loss)(trainable, features, target, g, fit_rows)
        # batch_rows of the fitting rows at random (all of them, padded, when fewer)
        draw = jax.random.uniform(jax.random.fold_in(key, i), fit_rows.shape)
        take = jnp.argsort(jnp.where(fit_rows, draw, 2.0))[:batch_rows]
        return jax.grad(mean_loss)(trainable, features[take], target[take], g, fit_rows[take])

    frozen, trainable, features, fit_rows, held_rows = jax.vmap(prepare)(layers, mean, std, X, n_rows, holdout)
    gradients = jax.vmap(gradient, in_axes=(0, 0, 0, 0, 0, 0, None))
    held_loss = jax.vmap(mean_loss)
    early = jnp.any(held_rows, axis=1) if early_stopping else jnp.zeros(len(n_rows), bool)

    def pick(flag, new, old):  # per member: new where flag (B,) holds, else old
        return jax.tree_util.tree_map(lambda a, b: jnp.where(flag.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)

    def check(carry):
        """Score the members on their held-out rows; keep each one's best layers; count checks
        without a better score (a member stopped at PATIENCE steps keeps what it has)."""
        trainable, best, best_loss, since = carry
        current = held_loss(trainable, features, y, n_groups, held_rows)
        better = early & (since < PATIENCE // CHECK_EVERY) & (current < best_loss - MIN_IMPROVEMENT)
        return pick(better, trainable, best), jnp.where(better, current, best_loss), jnp.where(better, 0, since + 1)

    def running(carry):
        i, _, _, _, _, since = carry
        return (i < steps) & jnp.any(~early | (since < PATIENCE // CHECK_EVERY))

    def step(carry):
        i, trainable, state, best, best_loss, since = carry
        grads = gradients(trainable, features, y, n_groups, fit_rows, keys, i)
        updates, state = jax.vmap(optimizer.update)(grads, state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        if early_stopping:  # every CHECK_EVERY steps: a real branch (the step count is shared)
            best, best_loss, since = jax.lax.cond(
                (i + 1) % CHECK_EVERY == 0, check, lambda c: c[1:], (trainable, best, best_loss, since)
            )
        return i + 1, trainable, state, best, best_loss, since

    start = jnp.where(early, held_loss(trainable, features, y, n_groups, held_rows), jnp.inf)
    carry = (jnp.int32(0), trainable, jax.vmap(optimizer.init)(trainable), trainable, start, jnp.zeros_like(n_rows))
    _, last, _, best, _, _ = jax.lax.while_loop(running, step, carry)
    return (*frozen, *pick(early, best, last))


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
