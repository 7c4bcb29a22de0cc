"""triplet_loss beyond the contract: parity with pytorch-metric-learning's TripletMarginLoss and miners, both
kernel paths (sweep and sort) against the textbook version (metricloss.textbook), determinism across thread
counts, and O(B²) memory."""

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from support import assert_same, lp, pk_batch, pml_value_and_grad, results_with_one_and_two_numba_threads

import metricloss as ml
from metricloss import textbook
from metricloss._kernels.numba import triplets as numba_triplets
from metricloss.testing import assert_close

DTYPES = [np.float32, np.float64]


def pk_labels(p, k):
    return np.repeat(np.arange(p), k)


# --- pytorch-metric-learning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("power", [1, 2])
def test_batch_all_equals_pml_triplet_margin_loss(dtype, power):
    x, labels = pk_batch(np.random.default_rng(0), dtype)
    theirs = pml_value_and_grad(pml_losses.TripletMarginLoss(margin=0.4, distance=lp(power)), x, labels)
    distance = "euclidean" if power == 1 else "sqeuclidean"
    assert_same(ml.triplet_loss(x, labels, margin=0.4, distance=distance), theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_hard_equals_pml_batch_hard_miner(dtype):
    x, labels = pk_batch(np.random.default_rng(1), dtype)
    labels[-1] = 99  # an anchor with no positive: PML's miner drops it, as does incomplete_anchors="drop"
    loss = pml_losses.TripletMarginLoss(margin=0.5, distance=lp())
    theirs = pml_value_and_grad(loss, x, labels, miner=pml_miners.BatchHardMiner(distance=lp()))
    ours = ml.triplet_loss(x, labels, mining="hard", margin=0.5, reduction="mean_nonzero")
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_batch_hard_equals_pml_smooth_loss_which_keeps_the_margin(dtype):
    x, labels = pk_batch(np.random.default_rng(2), dtype)
    loss = pml_losses.TripletMarginLoss(margin=0.2, smooth_loss=True, distance=lp())
    theirs = pml_value_and_grad(loss, x, labels, miner=pml_miners.BatchHardMiner(distance=lp()))
    ours = ml.triplet_loss(x, labels, mining="hard", soft=True, margin=0.2, reduction="mean_nonzero")
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_batch_all_equals_pml_smooth_loss_without_a_miner(dtype):
    """PML's TripletMarginLoss(smooth_loss=True) alone: softplus(d_ap − d_an + m) on every triplet, averaged by
    its AvgNonZeroReducer (every softplus is > 0: the mean over all triplets)."""
    x, labels = pk_batch(np.random.default_rng(7), dtype)
    theirs = pml_value_and_grad(pml_losses.TripletMarginLoss(margin=0.3, smooth_loss=True, distance=lp()), x, labels)
    assert_same(ml.triplet_loss(x, labels, mining="all", soft=True, margin=0.3), theirs, dtype)


def test_soft_terms_that_round_to_zero_in_float32_are_not_counted_as_pml_computes_them():
    """float32 rows of norm ~1e6 (found by metricloss.conformance's bank): anchor 4's one triplet has
    z = d_ap − d_an + m ≈ −269, whose softplus, e^−269, is 0 in float32. PML computes it so and its AvgNonZeroReducer
    leaves it out; metricloss, computing in float64, must not count it either (else the mean is over 4 terms, not 3)."""
    x = np.array(
        [
            [75438.13, -79262.92, 384253.6],
            [782400.0, 568248.56, -422241.16],
            [-439360.4, -326555.38, -189780.1],
            [-553035.25, -274635.5, 132117.08],
            [-605770.94, -125505.34, -95535.01],
        ],
        dtype=np.float32,
    )
    labels = np.array([0, 0, 1, 3, 3])
    theirs = pml_value_and_grad(pml_losses.TripletMarginLoss(margin=0.2, smooth_loss=True, distance=lp()), x, labels)
    for backend in ("numpy", "numba"):
        assert_same(ml.triplet_loss(x, labels, soft=True, margin=0.2, backend=backend), theirs, np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_semihard_equals_pml_triplet_margin_miner_semihard(dtype):
    x, labels = pk_batch(np.random.default_rng(3), dtype)
    miner = pml_miners.TripletMarginMiner(margin=0.6, type_of_triplets="semihard", distance=lp())
    theirs = pml_value_and_grad(pml_losses.TripletMarginLoss(margin=0.6, distance=lp()), x, labels, miner=miner)
    assert_same(ml.triplet_loss(x, labels, mining="all_semihard", margin=0.6), theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_query_vs_reference_equals_pml_with_ref_emb(dtype):
    rng = np.random.default_rng(4)
    x, labels = pk_batch(rng, dtype, p=5, k=3)
    refs, ref_labels = pk_batch(rng, dtype, p=5, k=4)
    theirs = pml_value_and_grad(pml_losses.TripletMarginLoss(margin=0.5, distance=lp()), x, labels, refs, ref_labels)
    ours = ml.triplet_loss(x, labels, margin=0.5, ref_embeddings=refs, ref_labels=ref_labels)
    assert_same(ours, theirs, dtype)


def test_references_equal_to_the_batch_keep_the_self_pairs():
    """A reference set is another set, even when equal to the batch: no pair is excluded (PML decides by object
    identity, its issue #488). Within the batch, the diagonal is excluded."""
    x, labels = pk_batch(np.random.default_rng(5), np.float64, p=3, k=2)
    within, _ = ml.triplet_loss(x, labels, mining="all", margin=0.1, reduction="mean")
    against_copy, _ = ml.triplet_loss(
        x, labels, mining="all", margin=0.1, reduction="mean", ref_embeddings=x.copy(), ref_labels=labels
    )
    expected_within, _ = textbook.triplet_loss(x, labels, mining="all", margin=0.1, reduction="mean")
    assert within == pytest.approx(expected_within, rel=1e-12)
    expected, _ = textbook.triplet_loss(
        x, labels, mining="all", margin=0.1, reduction="mean", ref_embeddings=x.copy(), ref_labels=labels
    )
    assert against_copy == pytest.approx(expected, rel=1e-12)
    assert against_copy != within


def _pml_pairs(miner, x, labels):
    import torch

    return tuple(t.numpy() for t in miner(torch.tensor(x), torch.as_tensor(labels)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(
    "miner",
    [
        pml_miners.PairMarginMiner(pos_margin=0.4, neg_margin=1.2, distance=lp()),
        pml_miners.MultiSimilarityMiner(epsilon=0.1, distance=lp()),
    ],
    ids=["pair-margin", "multi-similarity"],
)
def test_a_pair_miner_feeding_pml_triplet_loss_is_given_triplets_of_pairs_to_triplets(dtype, soft, miner):
    """PML turns a pair miner's (a1, p, a2, n) into every triplet of a positive and a negative pair sharing an
    anchor; triplets=pairs_to_triplets(...) gives the same value and gradients."""
    x, labels = pk_batch(np.random.default_rng(5), dtype)
    pairs = _pml_pairs(miner, x, labels)
    loss = pml_losses.TripletMarginLoss(margin=0.3, smooth_loss=soft, distance=lp())
    theirs = pml_value_and_grad(loss, x, labels, miner=miner)
    triplets = ml.pairs_to_triplets(*pairs)
    assert triplets[0].size > 10  # the case has triplets to compare
    assert_same(ml.triplet_loss(x, labels, margin=0.3, soft=soft, triplets=triplets), theirs, dtype)


def test_pairs_to_triplets_equals_pml_convert_to_triplets_in_its_order():
    import torch
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    rng = np.random.default_rng(6)
    a1, p, a2, n = (rng.integers(0, 9, size=size) for size in (40, 40, 55, 55))
    theirs = lmu.convert_to_triplets(tuple(torch.as_tensor(t) for t in (a1, p, a2, n)), torch.zeros(9))
    ours = ml.pairs_to_triplets(a1, p, a2, n)
    for mine, their in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine, their.numpy())


def test_given_triplets_are_the_batch_all_kernel_s_triplets_when_all_of_them_are_given():
    """Two independent paths: the kernel's sweep over every triplet, and those triplets enumerated and given."""
    x, labels = pk_batch(np.random.default_rng(7), np.float64)
    everything = ml.mine_triplets(x, labels, kind="all")
    for soft in (False, True):
        given_value, given_grad = ml.triplet_loss(x, labels, soft=soft, triplets=everything)
        kernel_value, kernel_grad = ml.triplet_loss(x, labels, soft=soft)
        assert given_value == pytest.approx(kernel_value, rel=1e-12)
        assert_close(given_grad, kernel_grad)


def test_given_triplets_gradient_matches_finite_differences():
    from metricloss.testing import check_grad

    x, labels = pk_batch(np.random.default_rng(8), np.float64, p=3, k=3)
    a, p, n = ml.mine_triplets(x, labels, kind="all", max_per_anchor=4, rng=0)
    triplets = (np.concatenate([a, a[:3]]), np.concatenate([p, p[:3]]), np.concatenate([n, n[:3]]))  # repeats
    check_grad(lambda e: ml.triplet_loss(e, labels, margin=0.7, triplets=triplets, reduction="sum"), x)
    refs = np.random.default_rng(9).standard_normal((7, x.shape[1]))
    ref_labels = np.array([0, 0, 1, 1, 2, 2, 2])
    given = (np.array([0, 3, 3]), np.array([1, 2, 3]), np.array([6, 0, 5]))
    check_grad(
        lambda e, r: ml.triplet_loss(e, labels, triplets=given, ref_embeddings=r, ref_labels=ref_labels), x, refs
    )


def test_given_triplets_that_are_not_triplets_of_the_batch_are_refused_by_name():
    x, labels = pk_batch(np.random.default_rng(10), np.float64, p=2, k=2)  # labels 0 0 1 1
    with pytest.raises(ValueError, match=r"triplets must have p of a's class .*got triplet 1: \(1, 1, 2\)"):
        ml.triplet_loss(x, labels, triplets=(np.array([0, 1]), np.array([1, 1]), np.array([2, 2])))
    with pytest.raises(ValueError, match="leave mining at 'all'; got 'hard'"):
        ml.triplet_loss(x, labels, mining="hard", triplets=(np.array([0]), np.array([1]), np.array([2])))
    empty = np.zeros(0, dtype=np.int64)
    value, grad = ml.triplet_loss(x, labels, triplets=(empty, empty, empty))
    assert value == 0.0 and not grad.any()


# --- kernels: both paths, both backends, the textbook version -------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("mining", ml.MININGS)
@pytest.mark.parametrize(("p", "k"), [(12, 4), (2, 40), (3, 30)], ids=["PxK", "two-classes", "three-classes"])
def test_kernels_equal_the_textbook_version_to_1e_12(backend, mining, p, k):
    """(12, 4) takes the per-positive sweep; 30 or 40 samples per class the sort-and-sweep path (each anchor's
    positives and negatives radix-sorted once, then two pointers). The value to 1e-12, the gradient to 1e-9."""
    assert (k - 1 <= numba_triplets.SWEEP_MAX_POSITIVES) == (k == 4)
    x, labels = pk_batch(np.random.default_rng(6), np.float64, p=p, k=k, features=5)
    value, grad = ml.triplet_loss(x, labels, mining=mining, margin=0.3, backend=backend)
    expected_value, expected_grad = textbook.triplet_loss(x, labels, mining=mining, margin=0.3)
    assert value == pytest.approx(expected_value, rel=1e-12)
    assert_close(grad, expected_grad, rtol=1e-9)


@pytest.mark.parametrize("mining", ml.MININGS)
@pytest.mark.parametrize(("p", "k"), [(12, 4), (2, 40)])
def test_numba_gradient_equals_numpy_gradient(mining, p, k):
    x, labels = pk_batch(np.random.default_rng(7), np.float64, p=p, k=k, features=5)
    value, grad = ml.triplet_loss(x, labels, mining=mining, margin=0.3, backend="numba")
    reference_value, reference_grad = ml.triplet_loss(x, labels, mining=mining, margin=0.3, backend="numpy")
    assert value == pytest.approx(reference_value, rel=1e-12)
    assert_close(grad, reference_grad, rtol=1e-12)


def test_same_input_gives_bitwise_the_same_result():
    x, labels = pk_batch(np.random.default_rng(8), np.float32, p=16, k=4, features=16)
    first = ml.triplet_loss(x, labels)
    for _ in range(3):
        again = ml.triplet_loss(x, labels)
        assert again[0] == first[0]
        np.testing.assert_array_equal(again[1], first[1])


_DETERMINISM_SCRIPT = """
import json, sys
import numpy as np
import metricloss as ml
from metricloss._kernels.numba import _jit
_jit.SERIAL_BELOW = 0  # the parallel kernels, at any size
_jit.THREADS = "parallel"
rng = np.random.default_rng(9)
x = rng.standard_normal((96, 16)).astype(np.float32)
labels = np.repeat(np.arange(24), 4)
big = np.repeat(np.arange(2), 48)
out = {}
for mining in ml.MININGS:
    for name, y in (("pk", labels), ("big", big)):
        value, grad = ml.triplet_loss(x, y, mining=mining, margin=0.5)
        out[f"{mining}-{name}"] = [value.hex(), grad.tobytes().hex()]
json.dump(out, sys.stdout)
"""


def test_results_are_bitwise_equal_with_one_and_two_numba_threads():
    one_thread, two_threads = results_with_one_and_two_numba_threads(_DETERMINISM_SCRIPT)
    assert one_thread == two_threads


@pytest.mark.parametrize("mining", ml.MININGS)
def test_peak_memory_is_a_few_distance_matrices_not_b_cubed(mining):
    """At B = 768 a B³ float32 array would be 1.8 GB; the loss must stay within 4 B×B matrices."""
    n, features = 768, 32
    x = np.random.default_rng(10).standard_normal((n, features)).astype(np.float32)
    labels = np.repeat(np.arange(n // 4), 4)
    ml.triplet_loss(x[:8], labels[:8], mining=mining)  # compile outside the measurement
    tracemalloc.start()
    ml.triplet_loss(x, labels, mining=mining)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 4 * n * n * x.itemsize, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("mining", ["hard", "semihard"])
@pytest.mark.parametrize(("p", "k", "features"), [(10, 4, 16), (2, 12, 2)], ids=["sparse-pairs", "dense-cotangent"])
def test_one_triplet_per_anchor_or_pair_pulls_back_sparsely_or_densely_with_the_same_gradient(mining, p, k, features):
    """Few triplets go through the pair-by-pair VJP, many through a dense cotangent: both match differences."""
    from metricloss.testing import check_grad

    x, labels = pk_batch(np.random.default_rng(11), np.float64, p=p, k=k, features=features)
    check_grad(lambda e: ml.triplet_loss(e, labels, mining=mining, margin=0.4), x, rtol=1e-6)


_PURE_PYTHON_SCRIPT = """
import warnings
import numpy as np
import metricloss as ml
warnings.simplefilter("error")
rng = np.random.default_rng(12)
x = rng.standard_normal((20, 3))
x[5] = x[4]  # a duplicate: distance 0 in the divisions
labels = np.repeat(np.arange(5), 4)
for mining in ml.MININGS:
    value, grad = ml.triplet_loss(x, labels, mining=mining, margin=0.5, backend="numba")
    reference_value, reference_grad = ml.triplet_loss(x, labels, mining=mining, margin=0.5, backend="numpy")
    assert abs(value - reference_value) <= 1e-12 * abs(reference_value), mining
    assert np.allclose(grad, reference_grad, rtol=1e-12, atol=1e-14), mining
value, grad = ml.contrastive_loss(x, labels, backend="numba")
assert np.allclose(grad, ml.contrastive_loss(x, labels, backend="numpy")[1], rtol=1e-12, atol=1e-14)
print("ok")
"""


def test_the_numba_kernels_are_valid_python_under_numba_disable_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run([sys.executable, "-c", _PURE_PYTHON_SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(11).random(3000) * 20 + 5,  # one scale: the exponent bytes are shared and skipped
        np.random.default_rng(12).random(777).astype(np.float32).astype(np.float64),  # float32 data: low bytes 0
        np.repeat(np.random.default_rng(13).random(50), 9),  # ties: stability decides
        np.array([0.0, -0.0, 1e-310, 5e-324, 1e300, 0.0, 2.0, -0.0, 1e-310]),  # zeros, subnormals, the top
        np.array([3.0]),
        np.array([], dtype=np.float64),
        np.random.default_rng(14).standard_normal(2000) * 50,  # both signs (the dot-product distance −x·y)
        np.array([-0.0, -5e-324, 5e-324, 0.0, -1e300, -2.0, -2.0, 1e-310, -1e-310, 0.0, -0.0]),  # around zero, ties
        np.repeat(-np.random.default_rng(15).random(40), 7),  # negative ties: stability decides
    ],
    ids=["one-scale", "float32-data", "ties", "zeros-subnormals", "one", "empty", "both-signs", "signed-zeros", "neg"],
)
def test_the_radix_argsort_equals_numpys_stable_argsort(values):
    """The kernels' radix sort of distances of any sign (both zeros, subnormals and ties included) gives exactly the
    permutation np.argsort(kind="stable") gives."""
    np.testing.assert_array_equal(numba_triplets._argsort_floats(values), np.argsort(values, kind="stable"))
