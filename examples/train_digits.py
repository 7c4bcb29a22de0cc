"""Learn an embedding of handwritten digits with a metric-learning loss, in NumPy, on the CPU, and see what it buys.

Two runs of one small network (x ↦ W2ᵀ relu(W1ᵀ x + b1) + b2, Adam), trained with the chosen loss:

* a **2-D embedding**, Hadsell, Chopra & LeCun's setting ("dimensionality reduction by learning an invariant
  mapping", 2006): the held-out images drawn in the plane, by PCA and by the trained network, and the
  nearest-neighbour retrieval each gives. Here learning matters: PCA to 2-D keeps little of the classes;
* a **16-D embedding**, against the raw pixels and PCA to the same dimension.

metricloss gives the loss and its gradient with respect to the embeddings; the backward pass through the network
is written out below. It prints a table of held-out retrieval metrics (leave-one-out nearest neighbours on the
held-out split) and writes a PNG with the two 2-D pictures, the loss curves and the table.

    python examples/train_digits.py                            # contrastive loss, 2-D and 16-D, ~10 s on 2 cores
    python examples/train_digits.py --loss triplet --mining all  # batch-all triplets on P×K batches
    python examples/train_digits.py --dataset mnist1d          # a harder data set, with a small 1-D convolution
    python examples/train_digits.py --help                     # every loss, mining, and option
"""

import argparse
import sys
import textwrap
import time
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

import metricloss as ml

# --- Data ---------------------------------------------------------------------------------------------------------


def load_dataset(name, seed):
    """(x_train, x_test, y_train, y_test, description): features scaled to about [0, 1], labels 0..9."""
    from sklearn.model_selection import train_test_split

    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x_train, x_test, y_train, y_test = train_test_split(
            digits.data / 16.0, digits.target, test_size=0.3, stratify=digits.target, random_state=seed
        )
        return x_train, x_test, y_train, y_test, "digits (8×8 pixels)"
    # MNIST-1D (Greydanus, 2020): generated here from its ten templates, no download; its own train/test split.
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    scale = np.abs(data["x"]).max()
    return data["x"] / scale, data["x_test"] / scale, data["y"], data["y_test"], "MNIST-1D (40 samples)"


# --- Networks: parameters, forward, and the backward pass by the chain rule --------------------------------------


def init_mlp(rng, n_in, n_out, n_hidden=128):
    """He-initialised weights of the two dense layers."""
    return {
        "W1": rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in),
        "b1": np.zeros(n_hidden),
        "W2": rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden),
        "b2": np.zeros(n_out),
    }


def forward_mlp(params, x):
    """Embeddings, and what the backward pass needs."""
    pre = x @ params["W1"] + params["b1"]
    hidden = np.maximum(pre, 0)
    return hidden @ params["W2"] + params["b2"], (x, pre, hidden)


def _dense_backward(params, cache, grad_embeddings):
    """∂L/∂(W1, b1, W2, b2) and ∂L/∂x from ∂L/∂embeddings, by the chain rule through the two layers."""
    x, pre, hidden = cache
    grad_hidden = grad_embeddings @ params["W2"].T
    grad_pre = grad_hidden * (pre > 0)  # relu'(z) = 1 iff z > 0
    grads = {
        "W2": hidden.T @ grad_embeddings,
        "b2": grad_embeddings.sum(axis=0),
        "W1": x.T @ grad_pre,
        "b1": grad_pre.sum(axis=0),
    }
    return grads, grad_pre @ params["W1"].T


def backward_mlp(params, cache, grad_embeddings):
    """∂L/∂params from ∂L/∂embeddings."""
    return _dense_backward(params, cache, grad_embeddings)[0]


CONV_CHANNELS, CONV_WIDTH = 32, 5  # the 1-D convolution's channels and kernel width (two layers, stride 2)


def _windows(signal, width, stride):
    """(B, L_out, width·C) sliding windows of a (B, L, C) signal: a 1-D convolution becomes one GEMM."""
    windows = np.lib.stride_tricks.sliding_window_view(signal, width, axis=1)[:, ::stride]  # (B, L_out, C, width)
    return windows.reshape(*windows.shape[:2], -1)


def _windows_vjp(grad_windows, shape, width, stride):
    """The adjoint of _windows: each window's gradient added back onto the samples it read."""
    b, _, channels = shape
    grad = np.zeros(shape)
    grad_windows = grad_windows.reshape(b, -1, channels, width)
    for j in range(width):  # tap j of window t reads sample t·stride + j
        grad[:, j : j + stride * grad_windows.shape[1] : stride] += grad_windows[:, :, :, j]
    return grad


def init_conv(rng, n_in, n_out, n_hidden=128):
    """Two 1-D convolution layers (CONV_CHANNELS channels, width CONV_WIDTH, stride 2, relu), then the dense
    layers of the MLP on the flattened feature map."""
    c, w = CONV_CHANNELS, CONV_WIDTH
    length = (((n_in - w) // 2 + 1) - w) // 2 + 1
    params = init_mlp(rng, length * c, n_out, n_hidden)
    params.update(
        K1=rng.standard_normal((w, c)) * np.sqrt(2.0 / w),
        c1=np.zeros(c),
        K2=rng.standard_normal((w * c, c)) * np.sqrt(2.0 / (w * c)),
        c2=np.zeros(c),
    )
    return params


def forward_conv(params, x):
    """Embeddings of (B, L) signals, and what the backward pass needs."""
    win1 = _windows(x[:, :, None], CONV_WIDTH, 2)
    pre1 = win1 @ params["K1"] + params["c1"]
    h1 = np.maximum(pre1, 0)
    win2 = _windows(h1, CONV_WIDTH, 2)
    pre2 = win2 @ params["K2"] + params["c2"]
    embeddings, dense_cache = forward_mlp(params, np.maximum(pre2, 0).reshape(len(x), -1))
    return embeddings, (win1, pre1, win2, pre2, dense_cache)


def backward_conv(params, cache, grad_embeddings):
    """∂L/∂params: the dense layers as in the MLP, then back through each convolution (a GEMM on windows)."""
    win1, pre1, win2, pre2, dense_cache = cache
    grads, grad_flat = _dense_backward(params, dense_cache, grad_embeddings)
    grad_pre2 = grad_flat.reshape(pre2.shape) * (pre2 > 0)
    grad_h1 = _windows_vjp(grad_pre2 @ params["K2"].T, pre1.shape, CONV_WIDTH, 2)
    grad_pre1 = grad_h1 * (pre1 > 0)
    grads.update(
        K2=np.einsum("blk,blc->kc", win2, grad_pre2),
        c2=grad_pre2.sum(axis=(0, 1)),
        K1=np.einsum("blk,blc->kc", win1, grad_pre1),
        c1=grad_pre1.sum(axis=(0, 1)),
    )
    return grads


NETWORKS = {"mlp": (init_mlp, forward_mlp, backward_mlp), "conv1d": (init_conv, forward_conv, backward_conv)}


def _to_sphere(x):
    """Rows scaled onto the unit sphere (the margin loss's setting), and their norms for the backward pass."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / norms, norms


def _to_sphere_vjp(u, norms, grad_u):
    """∂L/∂x from ∂L/∂u for u = x/‖x‖: (g − u (u·g)) / ‖x‖."""
    return (grad_u - u * np.sum(u * grad_u, axis=1, keepdims=True)) / norms


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


# --- Losses ---------------------------------------------------------------------------------------------------------
# Each: a function of (embeddings, labels, options, own parameters) giving the value, ∂L/∂embeddings and the
# gradients of the loss's own parameters (the triplet-center loss learns its class centres, the margin loss its β);
# and an activity: the fraction of the batch's terms that the progress bar reports.


def _contrastive(x, y, options, own):
    value, grad = ml.contrastive_loss(x, y, margin=options["margin"])
    return value, grad, {}


def _triplet(x, y, options, own):
    value, grad = ml.triplet_loss(x, y, mining=options["mining"], margin=options["margin"])
    return value, grad, {}


def _triplet_center(x, y, options, own):
    value, (grad, grad_centers) = ml.triplet_center_loss(x, y, own["centers"], margin=options["margin"])
    return value, grad, {"centers": grad_centers}


def _npair(x, y, options, own):
    """P×K batches with K = 2, grouped by class: rows 0, 2, 4, ... are the anchors, 1, 3, 5, ... the positives."""
    value, (grad_anchors, grad_positives) = ml.npair_pairs_loss(x[0::2], x[1::2], l2_reg=0.002)
    grad = np.empty_like(x)
    grad[0::2], grad[1::2] = grad_anchors, grad_positives
    return value, grad, {}


def _mnrl(x, y, options, own):
    """Batches of two samples per class, grouped by class: the anchors are one of each pair (rows 0, 2, 4, ...),
    the positives the other, each anchor's same-class partner (rows 1, 3, 5, ...); every other positive of the
    batch is one of its in-batch negatives (sentence-transformers' MultipleNegativesRankingLoss)."""
    value, (grad_anchors, grad_positives) = ml.multiple_negatives_ranking_loss(x[0::2], x[1::2])
    grad = np.empty_like(x)
    grad[0::2], grad[1::2] = grad_anchors, grad_positives
    return value, grad, {}


def _quadruplet(x, y, options, own):
    adaptive = options["mining"] == "adaptive-margins"
    value, grad = ml.quadruplet_loss(x, y, margin=options["margin"], adaptive_margins=adaptive)
    return value, grad, {}


def _lifted(x, y, options, own):
    value, grad = ml.lifted_structure_loss(x, y, margin=options["margin"])
    return value, grad, {}


def _generalized_lifted(x, y, options, own):
    value, grad = ml.generalized_lifted_structure_loss(x, y, margin=options["margin"])
    return value, grad, {}


def _warp(x, y, options, own):
    """In each class's run of K samples, the first half are queries, the second half items; relevant: same class."""
    k = np.count_nonzero(y == y[0])
    queries = np.arange(len(y)) % k < k // 2
    relevance = y[queries][:, None] == y[~queries][None, :]
    value, (grad_queries, grad_items) = ml.warp_embedding_loss(
        x[queries], x[~queries], relevance, margin=options["margin"], rng=options["rng"]
    )
    grad = np.empty_like(x)
    grad[queries], grad[~queries] = grad_queries, grad_items
    return value, grad, {}


def _margin(x, y, options, own):
    """Wu et al.'s margin loss on the unit sphere, with a learnable boundary β per class (initialised at 1.2, ν = 0)
    and, by default, their distance-weighted sampling: one negative per positive pair."""
    triplets = None
    if options["mining"] == "distance-weighted":
        triplets = ml.distance_weighted_negatives(x, y, rng=options["rng"])
    value, (grad, grad_beta) = ml.margin_loss(x, y, triplets, own["beta"], margin=options["margin"])
    return value, grad, {"beta": grad_beta}


def _multi_similarity(x, y, options, own):
    value, grad = ml.multi_similarity_loss(x, y, mining="epsilon" if options["mining"] == "pairs" else "all")
    return value, grad, {}


def _circle(x, y, options, own):
    """The defaults: the paper's setting for fine-grained image retrieval, m = 0.4, γ = 80 (PML's too)."""
    value, grad = ml.circle_loss(x, y)
    return value, grad, {}


def _ntxent(x, y, options, own):
    value, grad = ml.ntxent_loss(x, y, temperature=0.1)
    return value, grad, {}


def _supcon(x, y, options, own):
    value, grad = ml.supcon_loss(x, y, temperature=0.1)
    return value, grad, {}


def _pair_activity(x, y, options, own, grad):
    """Contrastive: the fraction of the batch's pairs whose term is non-zero (similar pairs not yet at one point,
    dissimilar pairs inside the margin)."""
    d = ml.pairwise_distances(x)
    same = y[:, None] == y[None, :]
    active = np.where(same, d > 0, d < options["margin"])
    return active[np.triu_indices(len(y), k=1)].mean()


def _margin_activity(x, y, options, own, grad):
    """Margin loss: the fraction of the batch's pairs (a, b) whose hinge is active, d_ab > β − α for a similar
    pair, d_ab < β + α for a dissimilar one (β of a's class)."""
    d = ml.pairwise_distances(x)
    beta = own["beta"][y][:, None]
    same = y[:, None] == y[None, :]
    active = np.where(same, d > beta - options["margin"], d < beta + options["margin"])
    return active[~np.eye(len(y), dtype=bool)].mean()


def _triplet_activity(x, y, options, own, grad):
    """Triplet and quadruplet losses: the fraction of the batch's triplets (a, p, n) inside the margin,
    d_an < d_ap + m, whichever of them the mining picks (the quadruplet loss's on squared distances)."""
    distance = "sqeuclidean" if options["loss"] == "quadruplet" else "euclidean"
    return ml.triplet_counts(x, y, margin=options["margin"], distance=distance)["active_fraction"]


def _row_activity(x, y, options, own, grad):
    """Triplet-center loss: the fraction of samples whose hinge is active (a non-zero gradient row)."""
    return np.any(grad != 0, axis=1).mean()


def _order_activity(x, y, options, own, grad):
    """Losses without a hinge: the fraction of the batch's triplets whose negative is nearer the anchor than the
    positive (Euclidean), the errors that Recall@1 counts."""
    return ml.triplet_counts(x, y, margin=0.0)["active_fraction"]


class Loss(NamedTuple):
    function: object  # (embeddings, labels, options, own) -> (value, ∂L/∂embeddings, {own parameter: gradient})
    sampling: str  # "shuffled", "classes" (P×K) or "pairs" (P×2): see batches()
    activity: object  # (embeddings, labels, options, own, grad) -> the fraction in the progress bar
    activity_name: str  # its name there
    summary: str  # for --help
    margin: float | None = None  # the margin this demo uses by default (None: the loss has none to set here)
    minings: tuple = ()  # the --mining choices, the first the default
    # Which tuples enter the loss when it has no --mining to choose: named in the figure's title.
    tuples: str = ""
    # The network's output is L2-normalised before the loss and for retrieval: the margin loss's setting, and the
    # losses on cosine similarities (for them it changes no gradient; it makes retrieval use the angles they train).
    sphere: bool = False


_ORDER = (_order_activity, "misordered")
LOSSES = {
    "contrastive": Loss(
        _contrastive,
        "shuffled",
        _pair_activity,
        "active",
        "Hadsell et al. 2006, ½d² / ½[m − d]₊² over all pairs",
        2.0,
        tuples="no mining: every pair of the batch",
    ),
    "triplet": Loss(
        _triplet,
        "classes",
        _triplet_activity,
        "active",
        "[d_ap − d_an + m]₊ on mined triplets",
        1.0,
        ("hard", *(m for m in ml.MININGS if m != "hard")),  # batch-hard first: the default
    ),
    "triplet-center": Loss(
        _triplet_center,
        "shuffled",
        _row_activity,
        "active",
        "He et al. 2018, against learnable class centres",
        1.0,
        tuples="no mining: each sample against its centre and the nearest other centre",
    ),
    "npair": Loss(
        _npair,
        "pairs",
        *_ORDER,
        "Sohn 2016, one positive per anchor, softmax over the batch",
        tuples="no mining: each anchor's positive against every other class's",
    ),
    "mnrl": Loss(
        _mnrl,
        "pairs",
        *_ORDER,
        "multiple negatives ranking loss, in-batch negatives, cosine × 20",
        sphere=True,
        tuples="no mining: every in-batch negative",
    ),
    "quadruplet": Loss(
        _quadruplet, "classes", _triplet_activity, "active", "Chen et al. 2017", 1.0, ("all", "adaptive-margins")
    ),
    "lifted": Loss(
        _lifted,
        "classes",
        *_ORDER,
        "Oh Song et al. 2016, lifted structured loss",
        1.0,
        tuples="no mining: every positive pair against all negatives (log-sum-exp)",
    ),
    "generalized-lifted": Loss(
        _generalized_lifted,
        "classes",
        *_ORDER,
        "Hermans et al. 2017's lifted form",
        1.0,
        tuples="no mining: every anchor's positives against its negatives (log-sum-exp)",
    ),
    "warp": Loss(
        _warp,
        "classes",
        *_ORDER,
        "Weston et al. 2011, sampled rank, half of each class as queries",
        1.0,
        tuples="negatives sampled until one violates the margin",
    ),
    "margin": Loss(
        _margin,
        "classes",
        _margin_activity,
        "active",
        "Wu et al. 2017 on the unit sphere, learnable β per class; --margin is α",
        0.2,
        ("distance-weighted", "all"),
        sphere=True,
    ),
    "multi-similarity": Loss(
        _multi_similarity, "classes", *_ORDER, "Wang et al. 2019", minings=("pairs", "none"), sphere=True
    ),
    "circle": Loss(
        _circle, "classes", *_ORDER, "Sun et al. 2020, m = 0.4, γ = 80", sphere=True, tuples="no mining: every pair"
    ),
    "ntxent": Loss(
        _ntxent,
        "classes",
        *_ORDER,
        "NT-Xent with labels, τ = 0.1",
        sphere=True,
        tuples="no mining: every positive pair against its anchor's negatives",
    ),
    "supcon": Loss(
        _supcon,
        "classes",
        *_ORDER,
        "Khosla et al. 2020, τ = 0.1",
        sphere=True,
        tuples="no mining: each anchor's positives against every other sample",
    ),
}
# --mining, as the figure's title names it.
MINING_TITLES = {
    "hard": "batch-hard mining",
    "adaptive-margins": "no mining: every quadruplet, adaptive margins",
    "all": "no mining: every tuple (batch-all)",
    "semihard": "semi-hard mining (FaceNet)",
    "all_semihard": "every semi-hard triplet mined",
    "distance-weighted": "distance-weighted sampling",
    "pairs": "ε pair mining",
    "none": "no mining: every pair",
}
MINING_HELP = {
    "hard": "batch-hard: per anchor the farthest positive and the nearest negative (Hermans et al. 2017)",
    "adaptive-margins": "every quadruplet, its margins adapted to the batch (Chen et al. 2017's hard negative mining)",
    "all": "every triplet (batch-all) or quadruplet of the batch (for margin: every triplet, no sampling)",
    "semihard": "per positive pair the nearest negative beyond the positive (FaceNet, as TF-Addons)",
    "all_semihard": "every semi-hard triplet (pytorch-metric-learning's semi-hard miner)",
    "distance-weighted": "one negative per positive pair, drawn ∝ 1/q(d) on the sphere (Wu et al. 2017)",
    "pairs": "the multi-similarity loss's ε pair mining (Wang et al. 2019)",
    "none": "the multi-similarity loss on every pair",
}


def batches(sampling, labels, p, k, rng):
    """One epoch of index batches: ``"shuffled"``, P·K samples at random; ``"classes"``, P classes × K samples
    (every anchor has positives and negatives in its batch); ``"pairs"``, two samples of each of P·K/2 classes
    (at most all of them), for the N-pair and in-batch-negatives losses."""
    if sampling == "shuffled":
        order = rng.permutation(len(labels))
        batch_size = p * k
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
        return
    if sampling == "pairs":
        p, k = min(p * k // 2, len(np.unique(labels))), 2
    yield from ml.pk_batches(labels, p=p, k=k, n_batches=len(labels) // (p * k), rng=rng)


# --- Training and evaluation -----------------------------------------------------------------------------------------


def embed(params, x, *, network="mlp", sphere=False):
    embeddings = NETWORKS[network][1](params, x)[0]
    return _to_sphere(embeddings)[0] if sphere else embeddings


def train(x_train, y_train, *, loss, network, options, p, k, epochs, learning_rate, embedding_dim, seed):
    """The trained parameters and the mean loss of each epoch, with a progress bar on stderr."""
    spec = LOSSES[loss]
    init, forward, backward = NETWORKS[network]
    rng = np.random.default_rng(seed)
    params = init(rng, x_train.shape[1], embedding_dim)  # the first draw: the untrained network of main()
    if loss == "triplet-center":  # learnable class centres, started at the class means of the untrained network
        params["centers"] = ml.init_centers(embed(params, x_train, network=network), y_train)
    if loss == "margin":  # learnable β per class, started at the paper's 1.2
        params["beta"] = np.full(int(y_train.max()) + 1, 1.2)
    optimizer = Adam(params, learning_rate)
    options = {**options, "loss": loss, "rng": rng}
    n_batches = sum(1 for _ in batches(spec.sampling, y_train, p, k, np.random.default_rng(0)))
    history = []
    with tqdm(total=epochs * n_batches, desc=f"{embedding_dim}-D {loss}", unit="batch", leave=True) as bar:
        for epoch in range(epochs):
            values, activities = [], []
            for batch in batches(spec.sampling, y_train, p, k, rng):
                embeddings, cache = forward(params, x_train[batch])
                if spec.sphere:
                    embeddings, norms = _to_sphere(embeddings)
                value, grad, own_grads = spec.function(embeddings, y_train[batch], options, params)
                activities.append(spec.activity(embeddings, y_train[batch], options, params, grad))
                if spec.sphere:
                    grad = _to_sphere_vjp(embeddings, norms, grad)
                optimizer.step(params, {**backward(params, cache, grad), **own_grads})
                values.append(value)
                bar.set_postfix(
                    {"epoch": epoch + 1, "loss": f"{np.mean(values):.4f}", spec.activity_name: f"{activities[-1]:.3f}"},
                    refresh=False,
                )
                bar.update()
            history.append(float(np.mean(values)))
    return params, history


# One column per metric: its name in the table → its key in metricloss.retrieval_metrics's dict (leave-one-out on the
# held-out split, pytorch-metric-learning's AccuracyCalculator definitions).
METRICS = {
    "Recall@1": "recall_at_1",
    "R-precision": "r_precision",
    "MAP@R": "mean_average_precision_at_r",
}


class Row(NamedTuple):
    kind: str  # "raw", "pca", "untrained" or "trained"
    label: str
    dim: int
    scores: dict  # metric name → value


def score(kind, label, embeddings, labels):
    metrics = ml.retrieval_metrics(embeddings, labels)
    return Row(kind, label, embeddings.shape[1], {name: metrics[key] for name, key in METRICS.items()})


def tuples_words(loss, mining):
    """Which tuples entered the loss, for the figure's title: the mining chosen, or what the loss takes without."""
    return MINING_TITLES[mining] if mining is not None else LOSSES[loss].tuples


class Gain(NamedTuple):
    """Where the trained embedding beats the raw features: ``shown``, the metrics that carry the gain (at least half
    the largest gain), ``rest`` the others, and ``sentence``, which says so with the numbers."""

    shown: tuple
    rest: tuple
    sentence: str


def gain_over_raw(rows):
    """The trained network of the largest dimension against the raw features, metric by metric. On digits the raw
    pixels' nearest neighbour is already almost always of the right class (Recall@1 0.974): the gain is in ranking
    the whole class first (MAP@R, R-precision); this finds that from the table, and says so."""
    (raw,) = [row for row in rows if row.kind == "raw"]
    trained = max((row for row in rows if row.kind == "trained"), key=lambda row: row.dim)
    gains = {name: trained.scores[name] - raw.scores[name] for name in METRICS}
    best = max(gains.values())
    if best <= 0:
        return Gain((), tuple(METRICS), f"the {trained.dim}-D network does not beat the {raw.label} on any metric")
    shown = tuple(sorted((name for name in METRICS if gains[name] >= best / 2), key=lambda name: -gains[name]))
    rest = tuple(name for name in METRICS if name not in shown)

    def change(name):
        return f"{name} {raw.scores[name]:.3f} → {trained.scores[name]:.3f}"

    sentence = f"{trained.dim}-D network against the {raw.label}: the gain is in " + " and ".join(map(change, shown))
    if rest:
        sentence += "; " + ", ".join(
            f"{name} already {raw.scores[name]:.3f} on the {raw.label} ({trained.scores[name]:.3f} trained)"
            for name in rest
        )
    return Gain(shown, rest, sentence)


def format_table(rows, title):
    width = max(len(row.label) for row in rows)
    lines = [title, f"{'':{width}}  {'dim':>4}" + "".join(f"  {name:>10}" for name in METRICS)]
    for row in rows:
        lines.append(f"{row.label:{width}}  {row.dim:4d}" + "".join(f"  {row.scores[n]:10.4f}" for n in METRICS))
    return "\n".join(lines)


def draw(path, *, title, pictures, y_test, histories, rows, table_title, gain):
    """The PNG: the held-out points in 2-D (PCA and the trained network) coloured by class, the loss curves, the
    table with the metrics that carry the gain over the raw features highlighted, and that gain in words. Agg
    canvas: no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 10), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 2))
    for i, (name, points) in enumerate(pictures):
        ax = fig.add_subplot(grid[0, i])
        scatter = ax.scatter(*points.T, c=y_test, cmap="tab10", vmin=-0.5, vmax=9.5, s=8)
        ax.set_title(name)
        ax.set_aspect("equal", adjustable="datalim")
    if pictures:
        fig.colorbar(scatter, ax=ax, ticks=range(10), label="class")
    ax = fig.add_subplot(grid[1, 0])
    for dim, history in histories.items():
        ax.plot(np.arange(1, len(history) + 1), history, label=f"{dim}-D")
    ax.set(xlabel="epoch", ylabel="mean training loss", title="loss")
    ax.legend()
    ax = fig.add_subplot(grid[1, 1])
    ax.axis("off")
    cells = [[row.label, str(row.dim), *(f"{row.scores[n]:.4f}" for n in METRICS)] for row in rows]
    table = ax.table(cellText=cells, colLabels=["embedding", "dim", *METRICS], loc="center", cellLoc="left")
    table.auto_set_column_width(list(range(2 + len(METRICS))))
    table.scale(1, 1.4)
    # The metrics that carry the gain, in the raw features' row and the trained network's of the largest dimension.
    compared = [rows.index(next(r for r in rows if r.kind == "raw"))]
    compared.append(rows.index(max((r for r in rows if r.kind == "trained"), key=lambda r: r.dim)))
    for i in compared:
        for name in gain.shown:
            table[i + 1, 2 + list(METRICS).index(name)].set_facecolor("#c7e9c0")
            table[i + 1, 2 + list(METRICS).index(name)].get_text().set_fontweight("bold")
    ax.set_title(f"{table_title}\n{textwrap.fill(gain.sentence, 75)}", fontsize="medium")
    fig.savefig(path, dpi=100)


def _help_epilog():
    losses = "\n".join(f"  {name:<19} {spec.summary}" for name, spec in LOSSES.items())
    minings = "\n".join(
        f"  {name:<19} {MINING_HELP[name]}; for --loss "
        + ", ".join(loss for loss, spec in LOSSES.items() if name in spec.minings)
        for name in MINING_HELP
    )
    defaults = ", ".join(f"{loss} {spec.minings[0]}" for loss, spec in LOSSES.items() if spec.minings)
    margins = ", ".join(f"{loss} {spec.margin:g}" for loss, spec in LOSSES.items() if spec.margin is not None)
    return (
        f"losses (--loss):\n{losses}\n\nmining strategies (--mining; default: {defaults}):\n{minings}\n\n"
        f"margins (--margin; default: {margins}; the other losses have none to set)\n\n"
        "progress bar: the epoch's running mean loss, and 'active' (hinge losses), the fraction of the batch's\n"
        "terms that are non-zero: pairs (contrastive, margin), triplets inside the margin (triplet, quadruplet),\n"
        "samples (triplet-center); or 'misordered' (the others), the fraction of the batch's triplets whose\n"
        "negative is nearer the anchor than the positive."
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog=_help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--loss", choices=list(LOSSES), default="contrastive", help="default: contrastive")
    parser.add_argument("--mining", choices=list(MINING_HELP), help="which tuples enter the loss (below)")
    parser.add_argument("--margin", type=float, help="the loss's margin (defaults below)")
    parser.add_argument(
        "--dataset",
        choices=("digits", "mnist1d"),
        default="digits",
        help="scikit-learn's 8×8 digits, split 70/30 (default); or MNIST-1D, generated locally by the mnist1d "
        "package (4000 training, 1000 held-out signals of 40 samples)",
    )
    parser.add_argument(
        "--network",
        choices=list(NETWORKS),
        help="two dense layers, or two 1-D convolutions before them (default: mlp for digits, conv1d for mnist1d)",
    )
    parser.add_argument("--p", type=int, default=8, help="P classes per batch (default 8)")
    parser.add_argument(
        "--k",
        type=int,
        default=16,
        help="K samples of each (default 16): batches of P×K; shuffled batches of P·K "
        "samples for contrastive and triplet-center; P·K/2 classes × 2 (at most every class) for npair and mnrl",
    )
    parser.add_argument(
        "--embedding-dim",
        type=int,
        nargs="+",
        default=[2, 16],
        help="one run per dimension; a 2-D one is drawn (default: 2 16)",
    )
    parser.add_argument("--epochs", type=int, default=40, help="passes over the training split (default 40)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="the split, the initial weights and the batches")
    parser.add_argument("--output", default="train_digits.png", help="the PNG (default: train_digits.png)")
    args = parser.parse_args(argv)
    spec = LOSSES[args.loss]
    if args.mining is not None and args.mining not in spec.minings:
        parser.error(
            f"--mining {args.mining} does not apply to --loss {args.loss}; its choices: {spec.minings or 'none'}"
        )
    if args.margin is not None and spec.margin is None:
        parser.error(f"--loss {args.loss} has no margin to set")
    if args.p < 2 or args.k < 2:
        parser.error(f"--p and --k must be at least 2; got {args.p} and {args.k}")
    return args


def main(argv=None):
    """Train, print the table, write the PNG; return the table's rows."""
    args = parse_args(argv)
    spec = LOSSES[args.loss]
    network = args.network or ("conv1d" if args.dataset == "mnist1d" else "mlp")
    options = {
        "margin": spec.margin if args.margin is None else args.margin,
        "mining": args.mining or (spec.minings[0] if spec.minings else None),
    }
    x_train, x_test, y_train, y_test, description = load_dataset(args.dataset, args.seed)
    print(f"{description}: {len(x_train)} training and {len(x_test)} held-out samples, 10 classes")
    setting = ", ".join(f"{key} {value}" for key, value in options.items() if value is not None)
    print(f"loss {args.loss}{' (' + setting + ')' if setting else ''}, network {network}, P×K = {args.p}×{args.k}")

    from sklearn.decomposition import PCA

    rows = [score("raw", "raw pixels" if args.dataset == "digits" else "raw signal", x_test, y_test)]
    pictures, histories = [], {}
    for dim in args.embedding_dim:
        pca = PCA(n_components=dim, svd_solver="full").fit(x_train)
        untrained = NETWORKS[network][0](np.random.default_rng(args.seed), x_train.shape[1], dim)
        started = time.perf_counter()
        params, histories[dim] = train(
            x_train,
            y_train,
            loss=args.loss,
            network=network,
            options=options,
            p=args.p,
            k=args.k,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            embedding_dim=dim,
            seed=args.seed,
        )
        print(f"{dim}-D: {args.epochs} epochs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        trained = embed(params, x_test, network=network, sphere=spec.sphere)
        rows += [
            score("pca", "PCA", pca.transform(x_test), y_test),
            score(
                "untrained", "network, untrained", embed(untrained, x_test, network=network, sphere=spec.sphere), y_test
            ),
            score("trained", f"network, {args.loss}", trained, y_test),
        ]
        if dim == 2:
            pictures = [("PCA to 2-D", pca.transform(x_test)), (f"trained network, {args.loss} loss", trained)]

    table_title = f"held-out retrieval, {len(x_test)} samples (leave-one-out)"
    print(format_table(rows, table_title))
    gain = gain_over_raw(rows)
    print(gain.sentence)
    draw(
        args.output,
        title=f"{description}: {args.loss} loss, {tuples_words(args.loss, options['mining'])}; held-out samples",
        pictures=pictures,
        y_test=y_test,
        histories=histories,
        rows=rows,
        table_title=table_title,
        gain=gain,
    )
    print(f"wrote {args.output}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
