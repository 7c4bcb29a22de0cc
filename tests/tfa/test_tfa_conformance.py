"""metricloss.conformance on TensorFlow Addons' triplet losses (float32, as TFA computes): each agrees on the random
batches under the settings triplet_loss's Notes give, and the bank finds each known divergence, among them the NaN of
tensorflow/addons#1676. Runs in TFA's own environment (see .ci/run), with metricloss's NumPy backend."""

import pytest

pytest.importorskip(
    "tensorflow", reason="TensorFlow Addons parity runs in its own environment (TF <= 2.15, numpy < 2): see .ci/run"
)
tfa = pytest.importorskip("tensorflow_addons", reason="see .ci/run: TFA parity runs in its own environment")

from metricloss.conformance import check, identify  # noqa: E402


def tfa_semihard(embeddings, labels):
    return tfa.losses.triplet_semihard_loss(labels, embeddings, margin=1.0)


def tfa_hard(embeddings, labels):
    return tfa.losses.triplet_hard_loss(labels, embeddings, margin=1.0)


def differing(report):
    return {o.case.name: o.kind for o in report.outcomes if o.kind not in ("agrees", "convention")}


def test_tfa_semihard_returns_nan_without_a_positive_pair_and_the_bank_names_it():
    report = check(tfa_semihard, "triplet_loss", mining="semihard", dtype="float32", backend="numpy")
    assert report.framework == "tensorflow"
    found = differing(report)
    for case in ("random P×K", "random P×K, 8×4", "anchors without positive", "norms ~1000"):
        assert case not in found
    assert found["lone sample"] == found["all distinct classes"] == "nonfinite"  # tensorflow/addons#1676
    assert found["one class"] == "value"  # d⁻ = 0 for an anchor without a negative; metricloss drops it
    assert found["norms ~1e-30"] == "gradient"  # its float32 squared distances underflow to 0


def test_tfa_hard_is_batch_hard_keeping_incomplete_anchors_except_a_lone_sample():
    report = check(tfa_hard, "triplet_loss", mining="hard", incomplete_anchors="keep", dtype="float32", backend="numpy")
    found = differing(report)
    for case in ("random P×K", "one class", "all distinct classes", "anchors without positive"):
        assert case not in found
    assert found["lone sample"] == "value"  # TFA costs it m; metricloss always drops a lone sample


def test_identify_recovers_tfa_hard_settings():
    found = identify(tfa_hard, "triplet_loss", margin=1.0, dtype="float32", backend="numpy")
    assert any(m.settings["mining"] == "hard" and m.settings["incomplete_anchors"] == "keep" for m in found.matches)
