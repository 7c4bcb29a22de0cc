"""Parity with TensorFlow Addons' npairs_loss and npairs_multilabel_loss (float32, as TFA is).

TFA takes the similarity matrix; metricloss takes the embeddings. Each test feeds TFA ``anchors @ positives.T`` and
compares values and the gradients with respect to the two embedding matrices, taken by TF's autograd through the
product. Runs in its own environment (see test_tfa_parity.py and .ci/run).
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


def tfa_value_and_grads(tfa_loss, y_true, anchors, positives):
    """TFA's loss on the similarity matrix of the two views, and its gradients with respect to the views."""
    variables = [tf.Variable(anchors), tf.Variable(positives)]
    with tf.GradientTape() as tape:
        value = tfa_loss(y_true, tf.matmul(variables[0], variables[1], transpose_b=True))
    grads = tape.gradient(value, variables)
    return float(value.numpy()), tuple(g.numpy() for g in grads)


def assert_same(ours, theirs):
    (value, grads), (expected_value, expected_grads) = ours, theirs
    assert value == pytest.approx(expected_value, rel=1e-4)
    for got, expected in zip(grads, expected_grads, strict=True):
        assert got.dtype == F32
        assert_close(got, expected, rtol=1e-4)


def views(seed, n=12, features=8):
    rng = np.random.default_rng(seed)
    anchors = 0.7 * rng.standard_normal((n, features))
    return anchors.astype(F32), (anchors + 0.5 * rng.standard_normal((n, features))).astype(F32), rng


@pytest.mark.parametrize("seed", range(3))
def test_npairs_loss_with_repeated_labels_is_the_soft_target_form(seed):
    anchors, positives, rng = views(seed)
    labels = rng.integers(0, 5, size=anchors.shape[0])
    theirs = tfa_value_and_grads(tfa.losses.npairs_loss, labels, anchors, positives)
    assert_same(ml.npair_pairs_loss(anchors, positives, labels), theirs)


def test_npairs_loss_with_distinct_labels_is_sohns_loss():
    anchors, positives, _ = views(3)
    theirs = tfa_value_and_grads(tfa.losses.npairs_loss, np.arange(anchors.shape[0]), anchors, positives)
    assert_same(ml.npair_pairs_loss(anchors, positives), theirs)


@pytest.mark.parametrize("seed", range(3))
def test_npairs_multilabel_loss_is_the_label_set_form(seed):
    anchors, positives, rng = views(10 + seed)
    indicators = (rng.random((anchors.shape[0], 6)) < 0.35).astype(np.int64)
    indicators[np.arange(anchors.shape[0]), rng.integers(0, 6, size=anchors.shape[0])] = 1  # every anchor labelled
    theirs = tfa_value_and_grads(tfa.losses.npairs_multilabel_loss, indicators, anchors, positives)
    assert_same(ml.npair_pairs_loss(anchors, positives, indicators), theirs)
    assert_same(ml.npair_pairs_loss(anchors, positives, indicators.astype(bool)), theirs)


def test_an_anchor_without_a_label_makes_tfa_nan_and_is_left_out_here():
    """TFA normalises each target row by its sum, 0/0 for an anchor with no label: NaN. metricloss leaves that
    anchor out: TFA's own computation (written out in TF) on the rows of the labelled anchors, every positive
    still a column."""
    anchors, positives, _ = views(20, n=8)
    indicators = np.eye(8, 4, dtype=np.int64)  # anchors 4..7 have no label ...
    indicators[4:, 0] = 1  # ... now they share class 0
    indicators[7] = 0  # and anchor 7 has none
    value, _ = tfa_value_and_grads(tfa.losses.npairs_multilabel_loss, indicators, anchors, positives)
    assert np.isnan(value)
    ours, (grad_anchors, grad_positives) = ml.npair_pairs_loss(anchors, positives, indicators)
    assert np.isfinite(ours) and np.isfinite(grad_anchors).all() and np.isfinite(grad_positives).all()
    # TFA on the labelled anchors alone: the unlabelled anchor's positive stays a column (a negative).
    labelled = slice(0, 7)
    variables = [tf.Variable(anchors[labelled]), tf.Variable(positives)]
    with tf.GradientTape() as tape:
        logits = tf.matmul(variables[0], variables[1], transpose_b=True)
        targets = tf.cast(indicators[labelled] @ indicators.T, tf.float32)
        targets /= tf.reduce_sum(targets, axis=1, keepdims=True)
        expected = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))
    expected_grads = tape.gradient(expected, variables)
    assert ours == pytest.approx(float(expected.numpy()), rel=1e-4)
    assert_close(grad_anchors[labelled], expected_grads[0].numpy(), rtol=1e-4)
    assert not grad_anchors[7].any()
    assert_close(grad_positives, expected_grads[1].numpy(), rtol=1e-4)
