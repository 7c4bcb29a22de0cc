"""triplet_center_loss and init_centers beyond the contract: parity with pytorch-metric-learning (its batch-hard
triplet loss against the centres as a reference set), the paper's ½ and the authors' released code pinned,
the gradient through batch means, one-sample classes, ties, bad labels, the centre initialisation and update,
backends at size, and O(B·C) memory."""

import tracemalloc

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from support import as_tuple, assert_same

import metricloss as ml
from metricloss import textbook
from metricloss.testing import assert_close, check_grad

DTYPES = [np.float32, np.float64]
REDUCERS = {"sum": pml_reducers.SumReducer, "mean": pml_reducers.MeanReducer, "mean_nonzero": None}


def inputs(rng, dtype, n=24, n_classes=6, features=8, scale=0.5):
    labels = rng.integers(0, n_classes, size=n)
    x = (scale * rng.standard_normal((n, features))).astype(dtype)
    centers = (scale * rng.standard_normal((n_classes, features))).astype(dtype)
    return x, labels, centers


def pml_center_loss(x, labels, *, margin, power, reduction, centers=None):
    """PML's TripletMarginLoss after its BatchHardMiner, with the centres as the reference set: the learnable
    ``centers`` (a leaf tensor) or, without them, the batch's class means computed in torch (so autograd goes
    through the means). Returns the value and the autograd gradients as NumPy."""
    x_t = torch.tensor(x, requires_grad=True)
    label_t = torch.as_tensor(labels)
    if centers is None:
        classes = torch.as_tensor(np.unique(labels))
        refs = torch.stack([x_t[label_t == c].mean(dim=0) for c in classes])
        ref_labels, leaves = classes, [x_t]
    else:
        refs = torch.tensor(centers, requires_grad=True)
        ref_labels, leaves = torch.arange(centers.shape[0]), [x_t, refs]
    distance = pml_distances.LpDistance(normalize_embeddings=False, power=power)
    reducer = {} if REDUCERS[reduction] is None else {"reducer": REDUCERS[reduction]()}
    loss = pml_losses.TripletMarginLoss(margin=margin, distance=distance, **reducer)
    indices = pml_miners.BatchHardMiner(distance=distance)(x_t, label_t, refs, ref_labels)
    value = loss(x_t, label_t, indices, refs, ref_labels)
    value.backward()
    grads = tuple(leaf.grad.numpy() for leaf in leaves)
    return value.item(), grads if centers is not None else grads[0]


# --- pytorch-metric-learning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_nonzero"])
@pytest.mark.parametrize(("distance", "power"), [("sqeuclidean", 2), ("euclidean", 1)])
def test_learnable_centres_equal_pml_batch_hard_triplet_loss_against_the_centres(dtype, reduction, distance, power):
    """halved=False: PML's TripletMarginLoss + BatchHardMiner with ref_emb=centers, ref_labels=arange(C), values
    and both gradients (SumReducer = "sum", MeanReducer = "mean", its default AvgNonZeroReducer = "mean_nonzero")."""
    x, labels, centers = inputs(np.random.default_rng(0), dtype)
    theirs = pml_center_loss(x, labels, margin=0.7, power=power, reduction=reduction, centers=centers)
    ours = ml.triplet_center_loss(
        x, labels, centers=centers, margin=0.7, distance=distance, halved=False, reduction=reduction
    )
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_nonzero"])
@pytest.mark.parametrize(("distance", "power"), [("sqeuclidean", 2), ("euclidean", 1)])
def test_batch_centres_equal_pml_against_class_means_with_autograd_through_the_means(dtype, reduction, distance, power):
    """centers=None: PML against the class means computed in torch, the gradient flowing through the means."""
    x, labels, _ = inputs(np.random.default_rng(1), dtype)
    labels[-1] = 99  # a class with one sample: its own centre
    theirs = pml_center_loss(x, labels, margin=0.5, power=power, reduction=reduction)
    ours = ml.triplet_center_loss(x, labels, margin=0.5, distance=distance, halved=False, reduction=reduction)
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("learnable", [True, False], ids=["learnable", "batch"])
def test_the_papers_half_is_half_of_pml_with_twice_the_margin(learnable):
    """The default D = ½‖f − c‖² (He et al.'s Eq.) with margin m is ½ × PML's squared-distance loss with margin 2m:
    ½d⁺ + m − ½d⁻ = ½(d⁺ + 2m − d⁻)."""
    x, labels, centers = inputs(np.random.default_rng(2), np.float64, scale=1.5)
    centers = centers if learnable else None
    theirs = pml_center_loss(x, labels, margin=2 * 5.0, power=2, reduction="sum", centers=centers)
    assert_same(ml.triplet_center_loss(x, labels, centers=centers), theirs, np.float64, scale=0.5)


def authors_released_loss(x, centers, labels, margin):
    """He et al.'s ``TripletCenter40LossAllClass`` (github.com/eriche2016/cvpr_2018_TCL.pytorch, custom_losses.py),
    its forward rewritten for current torch: Euclidean distances by the Gram form clamped at 1e-12, the own centre
    against the nearest other centre, ``MarginRankingLoss(margin)`` (a mean), gradients by autograd."""
    x_t, c_t = torch.tensor(x, requires_grad=True), torch.tensor(centers, requires_grad=True)
    n, m = x_t.shape[0], c_t.shape[0]
    dist = x_t.pow(2).sum(1, keepdim=True).expand(n, m) + c_t.pow(2).sum(1, keepdim=True).expand(m, n).t()
    dist = (dist - 2 * x_t @ c_t.t()).clamp(min=1e-12).sqrt()
    own = torch.zeros(n, m, dtype=torch.bool)
    own[torch.arange(n), torch.as_tensor(labels)] = True
    dist_ap = torch.stack([dist[i][own[i]].max() for i in range(n)])
    dist_an = torch.stack([dist[i][~own[i]].min() for i in range(n)])
    value = torch.nn.MarginRankingLoss(margin=margin)(dist_an, dist_ap, torch.ones(n, dtype=x_t.dtype))
    value.backward()
    return value.item(), (x_t.grad.numpy(), c_t.grad.numpy())


def test_the_authors_released_code_is_euclidean_not_halved_mean():
    x, labels, centers = inputs(np.random.default_rng(3), np.float64)
    theirs = authors_released_loss(x, centers, labels, margin=1.0)
    ours = ml.triplet_center_loss(
        x, labels, centers=centers, margin=1.0, distance="euclidean", halved=False, reduction="mean"
    )
    assert_same(ours, theirs, np.float64)


def test_learnable_centres_are_a_batch_hard_triplet_loss_against_the_centres():
    """The driver's query-vs-reference batch-hard selection is the loss: own centre vs the nearest other."""
    x, labels, centers = inputs(np.random.default_rng(4), np.float64)
    for distance in ml.SYMMETRIC_DISTANCES:
        ours = ml.triplet_center_loss(x, labels, centers=centers, distance=distance, halved=False, margin=0.3)
        theirs = ml.triplet_loss(
            x,
            labels,
            mining="hard",
            margin=0.3,
            distance=distance,
            reduction="sum",
            ref_embeddings=centers,
            ref_labels=np.arange(centers.shape[0]),
        )
        assert_same(ours, theirs, np.float64)


# --- batch centres --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
def test_batch_centre_gradient_is_the_direct_term_plus_the_means_gradient_over_the_class_size(distance):
    """∂L/∂f_k = (∂L/∂f_k with the centres held fixed) + (1/n_{y_k}) ∂L/∂c_{y_k}, and it matches differences."""
    x, labels, _ = inputs(np.random.default_rng(5), np.float64, n=16, n_classes=4)
    means = ml.init_centers(x, labels)
    _, grad = ml.triplet_center_loss(x, labels, distance=distance, margin=0.4)
    _, (direct, grad_means) = ml.triplet_center_loss(x, labels, centers=means, distance=distance, margin=0.4)
    counts = np.bincount(labels, minlength=means.shape[0])
    assert_close(grad, direct + grad_means[labels] / counts[labels, None])
    check_grad(lambda e: ml.triplet_center_loss(e, labels, distance=distance, margin=0.4), x, rtol=1e-6)


def test_a_class_with_one_sample_is_its_own_centre():
    """Its own distance is 0: the term is [m − D(f, nearest other mean)]₊, and its gradient still moves it."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    labels = np.array([3, 3, 8])  # class 8 has one sample, at distance 1 from class 3's mean (0, 0.5)
    value, grad = ml.triplet_center_loss(x, labels, margin=1.0, halved=False, distance="euclidean", reduction="sum")
    # class 3's samples: 0.5 + 1 − √(1 + 0.25) each; class 8's: 0 + 1 − 1 = 0 (inactive: the hinge needs > 0)
    assert value == pytest.approx(2 * (1.5 - np.sqrt(1.25)), rel=1e-12)
    expected, expected_grad = textbook.triplet_center_loss(
        x, labels, margin=1.0, halved=False, distance="euclidean", reduction="sum"
    )
    assert value == pytest.approx(expected)
    assert_close(grad, expected_grad)
    assert np.abs(grad[2]).max() > 0  # pulled by the two samples whose nearest other centre it is


def test_batch_centres_include_the_sample_and_only_the_nearest_other_centre_counts():
    """Not PML 1.x's CentroidTripletLoss: the own centre is the mean with the sample in it (not left out), and one
    negative centre per sample, the nearest (not every other class)."""
    x = np.array([[0.0, 0.0], [0.0, 2.0], [3.0, 1.0], [-5.0, 1.0]])
    labels = np.array([0, 0, 1, 2])  # class 0's mean (0, 1); classes 1 and 2 are single samples
    value, _ = ml.triplet_center_loss(x, labels, margin=10.0, halved=False, reduction="sum")
    # samples 0, 1: d⁺ = 1 (to (0, 1); left out it would be 4), nearest other (3, 1) at 9 + 1 = 10 (not (−5, 1));
    # sample 2: d⁺ = 0, nearest other (0, 1) at 9; sample 3: d⁺ = 0, nearest other (0, 1) at 25
    assert value == pytest.approx((1 + 10 - 10) * 2 + (0 + 10 - 9) + 0.0, rel=1e-12)


@pytest.mark.parametrize("learnable", [True, False], ids=["learnable", "batch"])
def test_one_sample_or_one_class_gives_zero_and_zero_gradient(learnable):
    x = np.array([[0.3, -0.2], [1.0, 2.0], [-1.0, 0.5]], dtype=np.float32)
    labels = np.zeros(3, dtype=int)
    centers = np.ones((1, 2), dtype=np.float32) if learnable else None
    for rows in (slice(0, 1), slice(0, 3)):
        value, grad = ml.triplet_center_loss(x[rows], labels[rows], centers=centers)
        assert value == 0.0
        for g, shape in zip(as_tuple(grad), [x[rows].shape] + ([centers.shape] if learnable else []), strict=True):
            assert g.dtype == np.float32 and g.shape == shape and not g.any()


def test_batch_centres_ignore_classes_absent_from_the_batch():
    """Only the classes present enter: class numbers need not be contiguous, and no empty class has a centre."""
    x, labels, _ = inputs(np.random.default_rng(6), np.float64)
    sparse = np.array([5, 17, 1000, 3, 42, 99])[labels]
    assert ml.triplet_center_loss(x, sparse)[0] == pytest.approx(ml.triplet_center_loss(x, labels)[0], rel=1e-12)


def test_ties_for_the_nearest_other_centre_go_to_the_lowest_row():
    """Two other centres at the same distance: the gradient goes to the lower row only."""
    x = np.array([[0.0, 0.0]])
    centers = np.array([[0.0, 0.5], [1.0, 0.0], [-1.0, 0.0]])  # rows 1 and 2 both at distance 1 from x
    _, (_, grad_centers) = ml.triplet_center_loss(x, np.array([0]), centers=centers)
    assert grad_centers[1].any() and not grad_centers[2].any()


# --- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [3, -1])
def test_labels_outside_the_centres_rows_raise_a_named_error(bad):
    x, labels, centers = inputs(np.random.default_rng(7), np.float64, n_classes=3)
    labels[4] = bad
    message = f"labels must be class indices in [0, 3) to index the rows of centers (one row per class); got {bad}"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ml.triplet_center_loss(x, labels, centers=centers)


def test_centres_are_the_third_argument_and_checked():
    """centers is positional-or-keyword right after labels (an array: the design's arrays are positional)."""
    x, labels, centers = inputs(np.random.default_rng(8), np.float64)
    positional = ml.triplet_center_loss(x, labels, centers)
    by_keyword = ml.triplet_center_loss(x, labels, centers=centers)
    assert positional[0] == by_keyword[0]
    for got, expected in zip(positional[1], by_keyword[1], strict=True):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="centers must have 8 features to match embeddings"):
        ml.triplet_center_loss(x, labels, centers=centers[:, :-1])


# --- init_centers and the centre update -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_init_centers_are_the_class_means_in_float64_returned_in_the_input_dtype(dtype):
    x, labels, _ = inputs(np.random.default_rng(9), dtype, n=40, n_classes=5)
    centers = ml.init_centers(x, labels)
    assert centers.dtype == dtype and centers.shape == (5, x.shape[1])
    expected = np.array(
        [
            [np.mean([row[f] for row, y in zip(x.astype(float), labels, strict=True) if y == c]) for f in range(8)]
            for c in range(5)
        ]
    )
    assert_close(centers, expected)


def test_init_centers_rule_for_absent_classes():
    x = np.array([[0.0, 0.0], [2.0, 4.0], [4.0, 2.0]])
    labels = np.array([0, 0, 3])
    assert_close(ml.init_centers(x, labels)[1:3], np.full((2, 2), 2.0))  # the mean of all rows
    assert not ml.init_centers(x, labels, absent="zeros")[1:3].any()
    assert ml.init_centers(x, labels, n_classes=6).shape == (6, 2)
    with pytest.raises(ValueError, match=r"labels must hold every class 0..3; no sample of class\(es\) \[1, 2\]"):
        ml.init_centers(x, labels, absent="raise")
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\)"):
        ml.init_centers(x, labels, n_classes=2)
    with pytest.raises(ValueError, match="absent must be one of 'mean', 'zeros', 'raise'"):
        ml.init_centers(x, labels, absent="random")
    with pytest.raises(TypeError):
        ml.init_centers(x, labels, 4)  # n_classes is keyword-only


def test_init_centers_move_with_the_data():
    x, labels, _ = inputs(np.random.default_rng(10), np.float64, n_classes=9)
    labels[labels == 4] = 0  # class 4 absent
    shift = np.arange(8.0)
    assert_close(ml.init_centers(x + shift, labels), ml.init_centers(x, labels) + shift, rtol=1e-12)


def test_gradient_descent_on_the_centres_lowers_the_loss():
    """The documented training-loop rule, centers -= lr * grad_centers, with the embeddings held fixed."""
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 4, size=64)
    x = rng.standard_normal((4, 8))[labels] + 0.8 * rng.standard_normal((64, 8))  # four overlapping classes
    centers = ml.init_centers(x, labels)
    first, _ = ml.triplet_center_loss(x, labels, centers=centers, margin=1.0, reduction="mean")
    for _ in range(30):
        _, (_, grad_centers) = ml.triplet_center_loss(x, labels, centers=centers, margin=1.0, reduction="mean")
        centers -= 0.5 * grad_centers
    last, _ = ml.triplet_center_loss(x, labels, centers=centers, margin=1.0, reduction="mean")
    assert last < 0.6 * first


# --- backends, memory -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("learnable", [True, False], ids=["learnable", "batch"])
@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
def test_numpy_and_numba_backends_agree_at_size(dtype, learnable, distance):
    rng = np.random.default_rng(12)
    x, labels, centers = inputs(rng, dtype, n=256, n_classes=64, features=16)
    centers = centers if learnable else None
    reference = ml.triplet_center_loss(x, labels, centers=centers, distance=distance, margin=1.0, backend="numpy")
    assert_same(ml.triplet_center_loss(x, labels, centers=centers, distance=distance, margin=1.0), reference, dtype)


@pytest.mark.parametrize("learnable", [True, False], ids=["learnable", "batch"])
def test_peak_memory_is_a_few_batch_by_centres_matrices(learnable):
    n, n_classes, features = 2048, 512, 64
    rng = np.random.default_rng(13)
    x = rng.standard_normal((n, features)).astype(np.float32)
    labels = np.repeat(np.arange(n_classes), n // n_classes)
    centers = rng.standard_normal((n_classes, features)).astype(np.float32) if learnable else None
    ml.triplet_center_loss(x[:8], labels[:8], centers=centers)  # compile outside the measurement
    tracemalloc.start()
    ml.triplet_center_loss(x, labels, centers=centers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 3 * n * n_classes * x.itemsize, f"peak {peak / 2**20:.1f} MiB"
