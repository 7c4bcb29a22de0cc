"""contrastive_loss beyond the contract: its pair kernel (numpy = numba, the split reduction's rescaling of the
similar pairs), and peak memory of at most two B×B matrices besides the distances it returns to."""

import tracemalloc

import numpy as np
import pytest

import metricloss as ml
from metricloss.testing import assert_close, check_grad


def pk_batch(rng, p, k, features, dtype=np.float64):
    return rng.standard_normal((p * k, features)).astype(dtype), np.repeat(np.arange(p), k)


@pytest.mark.parametrize("form", ml.CONTRASTIVE_FORMS)
@pytest.mark.parametrize("distance", ml.DISTANCES)
@pytest.mark.parametrize("split_reduction", [False, True])
def test_numba_pair_kernel_equals_the_numpy_reference(form, distance, split_reduction):
    """Every form, distance and reduction layout: the kernels agree to 1e-12 on value and gradient (the NumPy
    reference works in blocks of rows: 700 rows cross several blocks)."""
    x, labels = pk_batch(np.random.default_rng(0), 175, 4, 6)
    options = {"form": form, "distance": distance, "split_reduction": split_reduction, "reduction": "mean_nonzero"}
    value, grad = ml.contrastive_loss(x, labels, margin=3.0, pos_margin=0.5, backend="numba", **options)
    reference_value, reference_grad = ml.contrastive_loss(
        x, labels, margin=3.0, pos_margin=0.5, backend="numpy", **options
    )
    assert value == pytest.approx(reference_value, rel=1e-12)
    assert_close(grad, reference_grad, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "mean_nonzero"])
def test_split_reduction_with_different_weights_on_each_side_matches_central_differences(reduction):
    """The similar pairs' cotangent is rescaled by w_similar / w_dissimilar: checked where those differ a lot
    (few similar pairs, many dissimilar ones), and where no dissimilar pair is active (weight 0 on that side)."""
    rng = np.random.default_rng(1)
    x, labels = pk_batch(rng, 6, 3, 4)
    check_grad(lambda e: ml.contrastive_loss(e, labels, split_reduction=True, reduction=reduction, margin=2.5), x)
    far = 50.0 * np.arange(6)[:, None] * np.ones((1, 4))
    x_far = np.repeat(far, 3, axis=0) + 0.3 * rng.standard_normal((18, 4))
    value, _ = ml.contrastive_loss(x_far, labels, split_reduction=True, reduction=reduction)
    assert value > 0
    check_grad(lambda e: ml.contrastive_loss(e, labels, split_reduction=True, reduction=reduction), x_far)


@pytest.mark.parametrize("distance", ml.DISTANCES)
def test_peak_memory_is_at_most_two_distance_matrices(distance):
    """The kernel writes the cotangent over D (cosine: beside it); the pullback symmetrizes in place."""
    n, features = 1024, 32
    x, labels = pk_batch(np.random.default_rng(2), n // 4, 4, features, np.float32)
    ml.contrastive_loss(x[:8], labels[:8], distance=distance)  # compile outside the measurement
    tracemalloc.start()
    ml.contrastive_loss(x, labels, distance=distance, form="linear", split_reduction=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 2 * n * n * x.itemsize + 64 * n * features * x.itemsize, f"peak {peak / 2**20:.1f} MiB"
