"""Parity with TensorFlow Addons' triplet and contrastive losses (float32 only, as TFA is).

TFA needs TensorFlow <= 2.15 and numpy < 2, which cannot live beside torch 2.13 and numpy 2: `.ci/run` builds a
second virtual environment for this file (the README's test command shows how), with metricloss's NumPy backend.
"""

import numpy as np
import pytest

tf = pytest.importorskip(
    "tensorflow", reason="TensorFlow Addons parity runs in its own environment (TF <= 2.15, numpy < 2): see .ci/run"
)
tfa = pytest.importorskip("tensorflow_addons", reason="see .ci/run: TFA parity runs in its own environment")

import metricloss as ml  # noqa: E402
from metricloss.testing import assert_close  # noqa: E402

F32 = np.float32


def tf_value_and_grad(loss_fn, *arrays):
    variables = [tf.Variable(a) for a in arrays]
    with tf.GradientTape() as tape:
        value = loss_fn(*variables)
    grads = tape.gradient(value, variables)
    return float(value.numpy()), tuple(g.numpy() for g in grads)


def assert_same(ours, theirs):
    (value, grads), (expected_value, expected_grads) = ours, theirs
    assert value == pytest.approx(expected_value, rel=1e-4)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for got, expected in zip(grads, expected_grads, strict=True):
        assert got.dtype == F32
        assert_close(got, expected, rtol=1e-4)


def pk_batch(seed, p=6, k=4, features=8):
    rng = np.random.default_rng(seed)
    return (0.6 * rng.standard_normal((p * k, features))).astype(F32), np.repeat(np.arange(p), k)


@pytest.mark.parametrize(("metric", "distance"), [("L2", "euclidean"), ("squared-L2", "sqeuclidean")])
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_triplet_semihard_loss(metric, distance, margin):
    x, labels = pk_batch(0)
    theirs = tf_value_and_grad(
        lambda e: tfa.losses.triplet_semihard_loss(labels, e, margin=margin, distance_metric=metric), x
    )
    ours = ml.triplet_loss(x, labels, mining="semihard", margin=margin, distance=distance, backend="numpy")
    assert_same(ours, theirs)


@pytest.mark.parametrize(("metric", "distance"), [("L2", "euclidean"), ("squared-L2", "sqeuclidean")])
def test_triplet_hard_loss_keeps_incomplete_anchors(metric, distance):
    x, labels = pk_batch(1)
    labels[-1] = 99  # no positive: TFA keeps it with d⁺ = 0
    theirs = tf_value_and_grad(lambda e: tfa.losses.triplet_hard_loss(labels, e, margin=0.5, distance_metric=metric), x)
    ours = ml.triplet_loss(
        x, labels, mining="hard", margin=0.5, distance=distance, incomplete_anchors="keep", backend="numpy"
    )
    assert_same(ours, theirs)


def test_triplet_hard_loss_soft_is_hermans_soft_margin():
    x, labels = pk_batch(2)
    theirs = tf_value_and_grad(lambda e: tfa.losses.triplet_hard_loss(labels, e, soft=True), x)
    ours = ml.triplet_loss(x, labels, mining="hard", soft=True, incomplete_anchors="keep", backend="numpy")
    assert_same(ours, theirs)


def test_a_batch_without_positive_pairs_is_nan_in_tfa_and_zero_here():
    """tensorflow/addons#1676: triplet_semihard_loss divides by the number of positive pairs."""
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(F32)
    labels = np.arange(4)
    assert np.isnan(tfa.losses.triplet_semihard_loss(labels, x).numpy())
    value, grad = ml.triplet_loss(x, labels, mining="semihard", backend="numpy")
    assert value == 0.0 and not grad.any()


@pytest.mark.parametrize("margin", [1.0, 2.5])
def test_contrastive_loss_on_row_distances_is_the_squared_form(margin):
    rng = np.random.default_rng(4)
    x1, x2 = rng.standard_normal((30, 5)).astype(F32), rng.standard_normal((30, 5)).astype(F32)
    y = rng.integers(0, 2, size=30)

    def tfa_mean(a, b):
        distances = tf.norm(a - b, axis=1)
        return tf.reduce_mean(tfa.losses.contrastive_loss(y.astype(F32), distances, margin=margin))

    theirs = tf_value_and_grad(tfa_mean, x1, x2)
    assert_same(ml.contrastive_pair_loss(x1, x2, y, form="squared", margin=margin), theirs)
