"""Parity with TensorFlow Addons' lifted_struct_loss (float32 only, as TFA is): the paper's lifted structured loss
with Euclidean distances, and where TFA returns NaN.

TFA needs TensorFlow <= 2.15 and numpy < 2, which cannot live beside torch 2.13 and numpy 2: `.ci/run` builds a
second virtual environment for the tests in this folder, with metricloss's NumPy backend.
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


def tfa_value_and_grad(labels, x, margin):
    """TFA's lifted_struct_loss and its gradient with respect to the embeddings (a tf.function: the embeddings
    are a watched constant, not a fresh Variable per call)."""
    embeddings = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        value = tfa.losses.lifted_struct_loss(labels, embeddings, margin=margin)
    return float(value.numpy()), tape.gradient(value, embeddings).numpy()


def pk_batch(seed, p=6, k=4, features=8):
    rng = np.random.default_rng(seed)
    return (0.6 * rng.standard_normal((p * k, features))).astype(F32), np.repeat(np.arange(p), k)


@pytest.mark.parametrize("margin", [1.0, 0.4])
@pytest.mark.parametrize(("p", "k"), [(6, 4), (2, 10)], ids=["PxK", "two-classes"])
def test_lifted_struct_loss_equals_the_default(margin, p, k):
    """TFA's 0.25 Σ over ordered pairs of [J]₊² / |P| is the paper's 1/(2|P|) Σ over unordered pairs."""
    x, labels = pk_batch(0, p, k)
    value, grad = tfa_value_and_grad(labels, x, margin)
    ours_value, ours_grad = ml.lifted_structure_loss(x, labels, margin=margin, backend="numpy")
    assert ours_value == pytest.approx(value, rel=1e-4)
    assert ours_grad.dtype == F32
    assert_close(ours_grad, grad, rtol=1e-4)


def test_a_class_of_one_sample_is_a_negative_only():
    x, labels = pk_batch(1)
    labels[-1] = 99
    value, grad = tfa_value_and_grad(labels, x, 1.0)
    ours_value, ours_grad = ml.lifted_structure_loss(x, labels, backend="numpy")
    assert ours_value == pytest.approx(value, rel=1e-4)
    assert_close(ours_grad, grad, rtol=1e-4)


@pytest.mark.parametrize(
    "labels", [np.zeros(24, dtype=int), np.arange(24)], ids=["one class: no negative", "no positive pair"]
)
def test_tfa_returns_nan_where_metricloss_returns_zero(labels):
    """One class: TFA's log of an empty negative sum is −∞, and −∞ · 0 on the diagonal is NaN; no positive pair:
    0 / 0. metricloss returns (0.0, zeros) for both."""
    x, _ = pk_batch(2)
    value, grad = tfa_value_and_grad(labels, x, 1.0)
    assert np.isnan(value) and np.isnan(grad).any()
    ours_value, ours_grad = ml.lifted_structure_loss(x, labels, backend="numpy")
    assert ours_value == 0.0 and not ours_grad.any()
