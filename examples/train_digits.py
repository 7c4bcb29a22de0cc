"""Train a small embedding network on scikit-learn's digits with a metric-learning loss, on the CPU, in NumPy.

The network is two dense layers, x ↦ W2ᵀ relu(W1ᵀ x + b1) + b2, trained with Adam. metricloss gives the loss and
its gradient with respect to the embeddings; the backward pass through the two layers is written out by hand
below. Recall@1 (leave-one-out nearest neighbour on the held-out split) is printed before and after training.

    python examples/train_digits.py                   # contrastive loss on shuffled batches, ~10 s on two cores
    python examples/train_digits.py --loss triplet    # batch-hard triplet loss on P×K batches
    python examples/train_digits.py --help            # every loss: --loss {contrastive, triplet, ...}
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import metricloss as ml


def init_network(rng, n_in, n_hidden, n_out):
    """He-initialised weights of the two layers."""
    return {
        "W1": rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in),
        "b1": np.zeros(n_hidden),
        "W2": rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden),
        "b2": np.zeros(n_out),
    }


def forward(params, x):
    """Embeddings, and what the backward pass needs."""
    pre = x @ params["W1"] + params["b1"]
    hidden = np.maximum(pre, 0)
    return hidden @ params["W2"] + params["b2"], (x, pre, hidden)


def backward(params, cache, grad_embeddings):
    """∂L/∂params from ∂L/∂embeddings, by the chain rule through the two layers."""
    x, pre, hidden = cache
    grad_hidden = grad_embeddings @ params["W2"].T
    grad_pre = grad_hidden * (pre > 0)  # relu'(z) = 1 iff z > 0
    return {
        "W2": hidden.T @ grad_embeddings,
        "b2": grad_embeddings.sum(axis=0),
        "W1": x.T @ grad_pre,
        "b1": grad_pre.sum(axis=0),
    }


class Adam:
    """Adam (Kingma & Ba, 2015) over a dict of arrays."""

    def __init__(self, params, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        for k, g in grads.items():
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * g
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * g * g
            m_hat = self.m[k] / (1 - self.beta1**self.t)
            v_hat = self.v[k] / (1 - self.beta2**self.t)
            params[k] -= self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)


def embed(params, x):
    return forward(params, x)[0]


# Each loss: the P×K batch shape it trains on (None: shuffled batches), and a function of (embeddings, labels,
# hyper-parameters, the loss's own parameters) giving the value, ∂L/∂embeddings and the gradients of the loss's
# own parameters (the triplet-center loss learns its class centres).
def _contrastive(x, y, options, own):
    value, grad = ml.contrastive_loss(x, y, **options)
    return value, grad, {}


def _triplet(x, y, options, own):
    value, grad = ml.triplet_loss(x, y, mining="hard", **options)
    return value, grad, {}


def _triplet_center(x, y, options, own):
    value, (grad, grad_centers) = ml.triplet_center_loss(x, y, centers=own["centers"], **options)
    return value, grad, {"centers": grad_centers}


def _npair(x, y, options, own):
    """P×K batches with K = 2, grouped by class: rows 0, 2, 4, ... are the anchors, 1, 3, 5, ... the positives."""
    value, (grad_anchors, grad_positives) = ml.npair_loss(x[0::2], x[1::2], l2_reg=0.002, **options)
    grad = np.empty_like(x)
    grad[0::2], grad[1::2] = grad_anchors, grad_positives
    return value, grad, {}


def _quadruplet(x, y, options, own):
    value, grad = ml.quadruplet_loss(x, y, **options)
    return value, grad, {}


def _lifted(x, y, options, own):
    value, grad = ml.lifted_structure_loss(x, y, **options)
    return value, grad, {}


def _generalized_lifted(x, y, options, own):
    value, grad = ml.generalized_lifted_structure_loss(x, y, **options)
    return value, grad, {}


def _warp(x, y, options, own):
    """In each class's run of K samples, the first half are queries, the second half items; relevant: same class."""
    k = np.count_nonzero(y == y[0])
    queries = np.arange(len(y)) % k < k // 2
    relevance = y[queries][:, None] == y[~queries][None, :]
    value, (grad_queries, grad_items) = ml.warp_embedding_loss(x[queries], x[~queries], relevance, rng=0, **options)
    grad = np.empty_like(x)
    grad[queries], grad[~queries] = grad_queries, grad_items
    return value, grad, {}


def _multi_similarity(x, y, options, own):
    value, grad = ml.multi_similarity_loss(x, y, mining=True, **options)
    return value, grad, {}


def _circle(x, y, options, own):
    """pytorch-metric-learning's defaults for fine-grained retrieval (the paper's, with m = 0.4, γ = 80)."""
    value, grad = ml.circle_loss(x, y, m=0.4, gamma=80.0, **options)
    return value, grad, {}


def _ntxent(x, y, options, own):
    value, grad = ml.ntxent_loss(x, y, temperature=0.1, **options)
    return value, grad, {}


def _supcon(x, y, options, own):
    value, grad = ml.supcon_loss(x, y, temperature=0.1, **options)
    return value, grad, {}


LOSSES = {  # name: (how its batches are sampled, the loss)
    "contrastive": ("shuffled", _contrastive),
    "triplet": ("classes", _triplet),
    "triplet-center": ("shuffled", _triplet_center),
    "npair": ("pairs", _npair),
    "quadruplet": ("classes", _quadruplet),
    "lifted": ("classes", _lifted),
    "generalized-lifted": ("classes", _generalized_lifted),
    "warp": ("classes", _warp),
    "multi-similarity": ("classes", _multi_similarity),
    "circle": ("classes", _circle),
    "ntxent": ("classes", _ntxent),
    "supcon": ("classes", _supcon),
}
# The others: each loss's own default. The triplet-center loss's (5, on ½d²) is for the paper's 3-D shape features;
# these 16-dimensional embeddings start much closer together.
DEFAULT_MARGINS = {"contrastive": 2.0, "triplet-center": 1.0}


def batches(loss, labels, batch_size, rng):
    """One epoch of index batches: ``"shuffled"``; ``"classes"``, P = 8 classes × K = batch_size / 8 samples (every
    anchor has positives and negatives in its batch); ``"pairs"``, two samples of each of (up to) batch_size / 2
    classes, for the N-pair loss."""
    sampling = LOSSES[loss][0]
    n_classes = len(np.unique(labels))
    if sampling != "shuffled":
        p = min(8 if sampling == "classes" else batch_size // 2, n_classes)
        k = batch_size // p if sampling == "classes" else 2
        yield from ml.pk_batches(labels, p=p, k=k, n_batches=len(labels) // (p * k), rng=rng)
        return
    order = rng.permutation(len(labels))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        yield order[start : start + batch_size]


def train(x_train, y_train, *, loss, epochs, batch_size, margin, learning_rate, embedding_dim, seed, log=print):
    rng = np.random.default_rng(seed)
    params = init_network(rng, x_train.shape[1], 128, embedding_dim)
    if loss == "triplet-center":  # learnable class centres, started at the class means of the untrained network
        params["centers"] = ml.init_centers(embed(params, x_train), y_train)
    optimizer = Adam(params, learning_rate)
    options = {} if margin is None else {"margin": margin}
    loss_function = LOSSES[loss][1]
    for epoch in range(epochs):
        losses = []
        for batch in batches(loss, y_train, batch_size, rng):
            embeddings, cache = forward(params, x_train[batch])
            value, grad_embeddings, own_grads = loss_function(embeddings, y_train[batch], options, params)
            optimizer.step(params, {**backward(params, cache, grad_embeddings), **own_grads})
            losses.append(value)
        log(f"epoch {epoch + 1:3d}  {loss} loss {np.mean(losses):.4f}")
    return params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", choices=list(LOSSES), default="contrastive")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--margin", type=float, default=None, help="default: 2.0 (contrastive), 1.0 (triplet-center), else the loss's"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    margin = args.margin if args.margin is not None else DEFAULT_MARGINS.get(args.loss)

    digits = load_digits()
    x = digits.data / 16.0  # pixel intensities 0..16 → [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=args.seed
    )
    print(f"digits: {len(x_train)} training and {len(x_test)} held-out images of 8×8 pixels, 10 classes")
    print(f"held-out Recall@1 of the raw 64 pixels, for reference: {ml.recall_at_k(x_test, y_test):.4f}")

    untrained = init_network(np.random.default_rng(args.seed), x.shape[1], 128, args.embedding_dim)
    recall_before = ml.recall_at_k(embed(untrained, x_test), y_test, k=1)
    print(f"held-out Recall@1 before training: {recall_before:.4f}")

    started = time.perf_counter()
    params = train(
        x_train,
        y_train,
        loss=args.loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        margin=margin,
        learning_rate=args.learning_rate,
        embedding_dim=args.embedding_dim,
        seed=args.seed,
    )
    seconds = time.perf_counter() - started
    recall_after = ml.recall_at_k(embed(params, x_test), y_test, k=1)
    print(f"held-out Recall@1 after training:  {recall_after:.4f}  ({args.epochs} epochs in {seconds:.1f} s)")
    return recall_before, recall_after


if __name__ == "__main__":
    main()
