"""Train a small JAX embedding network on scikit-learn's digits with metricloss's batch-hard triplet loss.

``metricloss.adapters.jax.wrap`` makes the loss a differentiable JAX function (a ``custom_vjp`` around a host
callback), so the whole training step is ``jax.jit``-compiled and differentiated with ``jax.grad``.
Held-out Recall@1 is printed before and after.

    python examples/train_digits_jax.py
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import metricloss as ml
from metricloss.adapters.jax import wrap


def init(key, sizes=(64, 128, 16)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), jnp.zeros(n))
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def embed(params, x):
    (w1, b1), (w2, b2) = params
    return jax.nn.relu(x @ w1 + b1) @ w2 + b2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        (digits.data / 16.0).astype(np.float32),
        digits.target,
        test_size=0.3,
        stratify=digits.target,
        random_state=args.seed,
    )
    loss_fn = wrap(ml.triplet_loss, mining="hard", margin=args.margin)
    params = init(jax.random.PRNGKey(args.seed))
    first = jax.tree_util.tree_map(jnp.zeros_like, params)
    second = jax.tree_util.tree_map(jnp.zeros_like, params)

    @jax.jit
    def step(params, first, second, t, x, y):
        """One Adam step (Kingma & Ba, 2015) on the batch's triplet loss."""
        loss, grads = jax.value_and_grad(lambda p: loss_fn(embed(p, x), y))(params)
        first = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, first, grads)
        second = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, second, grads)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - args.learning_rate * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8),
            params,
            first,
            second,
        )
        return params, first, second, loss

    def recall():
        return ml.recall_at_k(np.asarray(embed(params, x_test)), y_test)

    before = recall()
    print(f"held-out Recall@1 before training: {before:.4f}")
    rng, t = np.random.default_rng(args.seed), 0
    for epoch in range(args.epochs):
        losses = []
        for batch in ml.pk_batches(y_train, p=8, k=16, n_batches=len(y_train) // 128, rng=rng):
            t += 1
            params, first, second, loss = step(params, first, second, t, x_train[batch], y_train[batch])
            losses.append(float(loss))
        print(f"epoch {epoch + 1:3d}  batch-hard triplet loss {np.mean(losses):.4f}")
    after = recall()
    print(f"held-out Recall@1 after training:  {after:.4f}")
    return before, after


if __name__ == "__main__":
    main()
