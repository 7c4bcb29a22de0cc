"""The dot-product distance −x·y and the signal-to-noise-ratio distance Var(y − x) / Var(x) (Yuan et al., CVPR
2019), beyond the contract: their matrices and gradients against pytorch-metric-learning's ``DotProductSimilarity``
and ``SNRDistance`` installed for real, the losses and miners that take them against PML's, central finite
differences (within one batch, where the asymmetric SNR distance gets both ends of every pair, and query against
reference), the constant-row convention, their invariances, and the losses that refuse them."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from support import assert_same, pk_batch, pml_dot, pml_value_and_grad

import metricloss as ml
from metricloss._pairwise import paired_distances_vjp
from metricloss.mining import batch_triplets, mine_triplets, triplet_counts
from metricloss.sampling import mine_dataset, rank_window_negatives
from metricloss.testing import assert_close, check_grad

DTYPES = [np.float32, np.float64]
BACKENDS = ["numpy", "numba"]
NEW = ["dot", "snr"]


def pml_snr():
    """PML's SNR distance without its default normalisation of the embeddings (metricloss never normalises)."""
    return pml_distances.SNRDistance(normalize_embeddings=False)


PML = {"dot": pml_dot, "snr": pml_snr}


def pml_matrix(distance, x, y=None):
    """PML's matrix as metricloss's distance: SNRDistance as it is, DotProductSimilarity negated."""
    args = (torch.tensor(x),) if y is None else (torch.tensor(x), torch.tensor(y))
    m = PML[distance]()(*args).numpy()
    return -m if distance == "dot" else m


@pytest.fixture
def rng():
    return np.random.default_rng(2019)


# --- the matrices -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", NEW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_distances_equal_pml_matrices(rng, dtype, distance, backend):
    """pairwise_distances(x[, y]) is SNRDistance()(x[, y]) and −DotProductSimilarity()(x[, y]), in the dtype."""
    x, y = rng.standard_normal((13, 7)).astype(dtype), rng.standard_normal((9, 7)).astype(dtype)
    for args in ((x,), (x, y)):
        d = ml.pairwise_distances(*args, distance=distance, backend=backend)
        assert d.dtype == dtype
        assert_close(d, pml_matrix(distance, *args))


@pytest.mark.parametrize("distance", NEW)
def test_paired_distances_equal_pml_rowwise_distances(rng, distance):
    """paired_distances is PML's row-wise ``pairwise_distance`` (anchor first for SNR)."""
    x1, x2 = rng.standard_normal((11, 6)), rng.standard_normal((11, 6))
    theirs = PML[distance]().pairwise_distance(torch.tensor(x1), torch.tensor(x2)).numpy()
    assert_close(ml.paired_distances(x1, x2, distance=distance), -theirs if distance == "dot" else theirs)


def test_snr_is_the_variance_ratio_with_either_normalisation_and_is_not_symmetric(rng):
    """D_ij = Var(x_j − x_i) / Var(x_i) from NumPy's variances (biased or unbiased: the ratio is the same), and
    D ≠ Dᵀ; the diagonal is exactly 0."""
    x = rng.standard_normal((8, 5))
    d = ml.pairwise_distances(x, distance="snr")
    for ddof in (0, 1):
        expected = np.var(x[None, :, :] - x[:, None, :], axis=2, ddof=ddof) / np.var(x, axis=1, ddof=ddof)[:, None]
        assert_close(d, expected)
    assert np.abs(d - d.T).max() > 0.1
    assert np.all(np.diag(d) == 0)


def test_snr_is_invariant_to_a_constant_per_row_and_a_common_scale_not_to_a_shift_or_rotation(rng):
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((5, 4))
    d = ml.pairwise_distances(x, y, distance="snr")
    moved = ml.pairwise_distances(
        3.0 * (x + rng.standard_normal((6, 1))), 3.0 * (y + rng.standard_normal((5, 1))), distance="snr"
    )
    assert_close(moved, d)
    shift = rng.standard_normal(4)
    assert np.abs(ml.pairwise_distances(x + shift, y + shift, distance="snr") - d).max() > 1e-3
    rotation, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    assert np.abs(ml.pairwise_distances(x @ rotation, y @ rotation, distance="snr") - d).max() > 1e-3


def test_snr_distances_of_rows_far_from_one_are_computed_without_overflow():
    """Rows of 1e30 (float32) and 1e-30: the rows are scaled by one power of two first, D unchanged."""
    x = np.random.default_rng(3).standard_normal((5, 4))
    d = ml.pairwise_distances(x, distance="snr")
    for scale in (1e30, 1e-30):
        scaled = ml.pairwise_distances((scale * x).astype(np.float32), distance="snr")
        assert_close(scaled, d.astype(np.float32))


def test_a_nearly_constant_anchor_whose_snr_distances_overflow_is_refused_by_name():
    """A row of variance ~1e-60 against rows of variance ~1 in float32: D ~ 1e60 is not representable."""
    x = np.array([[1.0, 2.0, 3.0], [0.0, 1e-30, 0.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"x has rows so nearly constant .* not representable"):
        ml.pairwise_distances(x, distance="snr")


# --- the constant-row convention --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_constant_anchor_has_snr_distance_1_to_everything_and_no_gradient(backend):
    """Var(a) = 0: PML divides by zero (inf or NaN); here D_a· = 1, itself included, and its cotangent pulls
    nothing. A constant reference, by contrast, is an ordinary point: D = Var(−a)/Var(a) = 1 with a gradient."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 4))
    x[2] = 0.7  # constant
    d, vjp = ml.pairwise_distances_vjp(x, distance="snr", backend=backend)
    assert np.all(d[2] == 1.0)
    assert_close(d[[0, 1, 3, 4], 2], np.ones(4))  # every anchor's distance to a constant row is 1 too
    with np.errstate(all="raise"):
        theirs = pml_matrix("snr", x)
    assert not np.isfinite(theirs[2]).any()
    assert_close(np.delete(d, 2, axis=0), np.delete(theirs, 2, axis=0))
    g = np.zeros_like(d)
    g[2] = rng.standard_normal(5)  # a cotangent on the constant anchor's row only
    assert np.all(vjp(g) == 0)
    g = np.zeros_like(d)
    g[0, 2] = 1.0  # on the constant row as a reference
    assert np.abs(vjp(g)[2]).max() > 0
    assert_close(ml.paired_distances(x[[2, 0]], x[[0, 2]], distance="snr"), np.ones(2))


def test_a_constant_anchor_gives_finite_losses():
    """triplet and contrastive losses over a batch with constant rows (one feature: every row) stay finite."""
    rng = np.random.default_rng(5)
    x, labels = rng.standard_normal((8, 3)), np.repeat(np.arange(4), 2)
    x[[1, 6]] = [[0.5, 0.5, 0.5], [-2.0, -2.0, -2.0]]
    for mining in ("all", "hard", "semihard", "all_semihard"):
        value, grad = ml.triplet_loss(x, labels, mining=mining, distance="snr")
        assert np.isfinite(value) and np.isfinite(grad).all()
    # one feature, every row constant: every d is 1, so each similar ordered pair costs ½(1 − 0)², each dissimilar
    # one [1 − 1]₊ = 0, the mean is over the 8·7 ordered pairs, and no anchor has a gradient
    value, grad = ml.contrastive_loss(x[:, :1], labels, distance="snr")
    assert value == pytest.approx(0.5 * 8 / 56)  # 4 classes of 2: 8 similar ordered pairs
    assert np.all(grad == 0)


# --- gradients by central differences ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", NEW)
def test_pairwise_vjp_matches_central_differences(distance, backend):
    """⟨W, D(x)⟩ and ⟨V, D(x, y)⟩ for random W, V: within one batch (both ends of every pair, D asymmetric for
    SNR) and query against reference."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((4, 5))
    w, v = rng.standard_normal((7, 7)), rng.standard_normal((7, 4))

    def within(x):
        d, vjp = ml.pairwise_distances_vjp(x, distance=distance, backend=backend)
        return float(np.sum(w * d)), vjp(w)

    def across(x, y):
        d, vjp = ml.pairwise_distances_vjp(x, y, distance=distance, backend=backend)
        return float(np.sum(v * d)), vjp(v)

    check_grad(within, x)
    check_grad(across, x, y)


@pytest.mark.parametrize("distance", NEW)
def test_paired_vjp_matches_central_differences(distance):
    rng = np.random.default_rng(7)
    x1, x2, w = rng.standard_normal((6, 5)), rng.standard_normal((6, 5)), rng.standard_normal(6)

    def loss(x1, x2):
        d, pullback = paired_distances_vjp(x1, x2, distance)
        return float(np.sum(w * d)), pullback(w.copy())

    check_grad(loss, x1, x2)


@pytest.mark.parametrize("distance", NEW)
@pytest.mark.parametrize(
    "options",
    [
        {"mining": "all"},
        {"mining": "all_semihard", "margin": 0.8},
        {"mining": "hard"},
        {"mining": "hard", "incomplete_anchors": "keep"},
        {"mining": "semihard"},
        {"mining": "all", "soft": True},
        {"mining": "hard", "soft": True, "margin": 0.1},
    ],
)
def test_triplet_loss_matches_central_differences(distance, options):
    """Every mining, within one batch and query against reference (the SNR batch-all takes the per-anchor kernel
    and a pullback with both ends of each pair)."""
    rng = np.random.default_rng(8)
    x, labels = 0.7 * rng.standard_normal((12, 4)), rng.integers(0, 3, 12)
    refs, ref_labels = 0.7 * rng.standard_normal((9, 4)), rng.integers(0, 3, 9)
    check_grad(lambda e: ml.triplet_loss(e, labels, distance=distance, **options), x)
    check_grad(
        lambda e, r: ml.triplet_loss(e, labels, distance=distance, ref_embeddings=r, ref_labels=ref_labels, **options),
        x,
        refs,
    )


@pytest.mark.parametrize("distance", NEW)
@pytest.mark.parametrize("form", ml.CONTRASTIVE_FORMS)
def test_contrastive_loss_matches_central_differences(distance, form):
    rng = np.random.default_rng(9)
    x, labels = 0.7 * rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    margins = {"pos_margin": -0.3, "margin": 0.1} if distance == "dot" else {"pos_margin": 0.5, "margin": 2.0}
    check_grad(lambda e: ml.contrastive_loss(e, labels, distance=distance, form=form, **margins), x)
    refs, ref_labels = 0.7 * rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    check_grad(
        lambda e, r: ml.contrastive_loss(
            e, labels, distance=distance, form=form, ref_embeddings=r, ref_labels=ref_labels, **margins
        ),
        x,
        refs,
    )


def test_snr_contrastive_within_a_batch_counts_every_ordered_pair():
    """SNR's d_ij ≠ d_ji: the terms are the B(B − 1) ordered pairs, so "sum" is the sum over both directions, the
    sum of the same loss with the batch as its own (separate) reference set less the pairs (i, i)."""
    rng = np.random.default_rng(10)
    x, labels = rng.standard_normal((7, 4)), rng.integers(0, 2, 7)
    d = ml.pairwise_distances(x, distance="snr")
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(7, dtype=bool)
    h = np.where(same, np.maximum(d - 0.3, 0), np.maximum(2.0 - d, 0))
    expected = float(np.sum(0.5 * h[off] ** 2))
    value, _ = ml.contrastive_loss(x, labels, distance="snr", pos_margin=0.3, margin=2.0, reduction="sum")
    assert value == pytest.approx(expected, rel=1e-12)


# --- parity with pytorch-metric-learning ------------------------------------------------------------------------


MARGIN = {"dot": 0.5, "snr": 0.3}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", NEW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_loss_equals_pml_triplet_margin_loss(rng, dtype, distance, backend):
    """TripletMarginLoss(margin, distance=D) alone is mining="all" with the same margin (for the dot product
    PML's [s_an − s_ap + m]₊ is [d_ap − d_an + m]₊ with d = −s)."""
    x, labels = pk_batch(rng, dtype)
    m = MARGIN[distance]
    theirs = pml_value_and_grad(pml_losses.TripletMarginLoss(margin=m, distance=PML[distance]()), x, labels)
    assert_same(ml.triplet_loss(x, labels, distance=distance, margin=m, backend=backend), theirs, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", NEW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_hard_triplet_loss_equals_pml_with_batch_hard_miner(rng, dtype, distance, backend):
    """BatchHardMiner(distance=D) then TripletMarginLoss is mining="hard", reduction="mean_nonzero"."""
    x, labels = pk_batch(rng, dtype)
    m = MARGIN[distance]
    loss = pml_losses.TripletMarginLoss(margin=m, distance=PML[distance]())
    theirs = pml_value_and_grad(loss, x, labels, miner=pml_miners.BatchHardMiner(distance=PML[distance]()))
    ours = ml.triplet_loss(
        x, labels, mining="hard", reduction="mean_nonzero", distance=distance, margin=m, backend=backend
    )
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", NEW)
def test_semihard_triplet_loss_equals_pml_with_semihard_triplet_margin_miner(rng, distance, backend):
    """TripletMarginMiner(margin, type_of_triplets="semihard", distance=D) then TripletMarginLoss is
    mining="all_semihard" (the bands differ only at exact ties)."""
    x, labels = pk_batch(rng, np.float64)
    m = MARGIN[distance]
    miner = pml_miners.TripletMarginMiner(margin=m, type_of_triplets="semihard", distance=PML[distance]())
    loss = pml_losses.TripletMarginLoss(margin=m, distance=PML[distance]())
    theirs = pml_value_and_grad(loss, x, labels, miner=miner)
    assert theirs[0] > 0
    ours = ml.triplet_loss(x, labels, mining="all_semihard", distance=distance, margin=m, backend=backend)
    assert_same(ours, theirs, np.float64)


@pytest.mark.parametrize("distance", NEW)
def test_smooth_batch_hard_and_reference_set_equal_pml(rng, distance):
    """smooth_loss=True after BatchHardMiner is mining="hard", soft=True; with ref_emb= PML pairs every query with
    every reference, as ref_embeddings= does (the SNR anchor is the query)."""
    x, labels = pk_batch(rng, np.float64)
    m = MARGIN[distance]
    loss = pml_losses.TripletMarginLoss(margin=m, smooth_loss=True, distance=PML[distance]())
    theirs = pml_value_and_grad(loss, x, labels, miner=pml_miners.BatchHardMiner(distance=PML[distance]()))
    ours = ml.triplet_loss(x, labels, mining="hard", soft=True, reduction="mean_nonzero", distance=distance, margin=m)
    assert_same(ours, theirs, np.float64)
    refs, ref_labels = pk_batch(rng, np.float64, p=5, k=3)
    loss = pml_losses.TripletMarginLoss(margin=m, distance=PML[distance]())
    theirs = pml_value_and_grad(loss, x[:10], labels[:10], refs, ref_labels)
    ours = ml.triplet_loss(x[:10], labels[:10], distance=distance, margin=m, ref_embeddings=refs, ref_labels=ref_labels)
    assert_same(ours, theirs, np.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_loss_with_dot_equals_pml_with_margins_negated(rng, dtype, backend):
    """PML's ContrastiveLoss(pos_margin=a, neg_margin=b, distance=DotProductSimilarity()) works on similarities:
    [a − s]₊ for similar pairs, [s − b]₊ for dissimilar ones. With d = −s that is [d − (−a)]₊ and [(−b) − d]₊:
    metricloss's pos_margin=−a, margin=−b, with form="linear", reduction="mean_nonzero", split_reduction=True."""
    x, labels = pk_batch(rng, dtype)
    a, b = 0.2, 0.05
    theirs = pml_value_and_grad(pml_losses.ContrastiveLoss(pos_margin=a, neg_margin=b, distance=pml_dot()), x, labels)
    ours = ml.contrastive_loss(
        x,
        labels,
        distance="dot",
        pos_margin=-a,
        margin=-b,
        form="linear",
        reduction="mean_nonzero",
        split_reduction=True,
        backend=backend,
    )
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_loss_with_snr_equals_pml(rng, dtype, backend):
    """ContrastiveLoss(pos_margin=a, neg_margin=b, distance=SNRDistance()): the margins as they are; PML's ordered
    pairs are metricloss's SNR pairs within one batch (every (i, j), i ≠ j). And with a reference set."""
    x, labels = pk_batch(rng, dtype)
    loss = pml_losses.ContrastiveLoss(pos_margin=0.5, neg_margin=1.5, distance=pml_snr())
    options = {"pos_margin": 0.5, "margin": 1.5, "form": "linear", "reduction": "mean_nonzero"}
    options |= {"split_reduction": True, "distance": "snr", "backend": backend}
    assert_same(ml.contrastive_loss(x, labels, **options), pml_value_and_grad(loss, x, labels), dtype)
    refs, ref_labels = pk_batch(rng, dtype, p=4, k=3)
    theirs = pml_value_and_grad(loss, x, labels, refs, ref_labels)
    assert_same(ml.contrastive_loss(x, labels, ref_embeddings=refs, ref_labels=ref_labels, **options), theirs, dtype)


# --- miners -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", NEW)
def test_batch_triplets_equals_pml_batch_hard_miner(rng, distance):
    x, labels = pk_batch(rng, np.float64)
    a, p, n = (
        t.numpy() for t in pml_miners.BatchHardMiner(distance=PML[distance]())(torch.tensor(x), torch.tensor(labels))
    )
    ours = batch_triplets(x, labels, distance=distance)
    for got, expected in zip(ours, (a, p, n), strict=True):
        np.testing.assert_array_equal(got, expected)


def _as_set(triplets):
    return set(zip(*(np.asarray(t).tolist() for t in triplets), strict=True))


@pytest.mark.parametrize("distance", NEW)
@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
def test_mine_triplets_equals_pml_triplet_margin_miner(rng, distance, kind):
    """TripletMarginMiner(margin, type_of_triplets) on data without exact ties: the same set of triplets ("all"
    there is "active" here)."""
    x, labels = pk_batch(rng, np.float64)
    m = MARGIN[distance]
    miner = pml_miners.TripletMarginMiner(margin=m, type_of_triplets=kind, distance=PML[distance]())
    theirs = miner(torch.tensor(x), torch.tensor(labels))
    ours = mine_triplets(x, labels, kind="active" if kind == "all" else kind, margin=m, distance=distance)
    assert _as_set(ours) == _as_set(theirs)
    assert len(ours[0]) > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", NEW)
def test_triplet_counts_equal_a_loop_over_the_pml_matrix(rng, distance, backend):
    """Easy, semi-hard and hard triplets counted by loops over PML's matrix (anchor rows, SNR asymmetric)."""
    x, labels = pk_batch(rng, np.float64)
    d = pml_matrix(distance, x)
    m = MARGIN[distance]
    counts = {"valid": 0, "easy": 0, "semihard": 0, "hard": 0}
    for a in range(len(x)):
        for p in range(len(x)):
            for n in range(len(x)):
                if p != a and labels[p] == labels[a] and labels[n] != labels[a]:
                    counts["valid"] += 1
                    kind = "hard" if d[a, n] < d[a, p] else "semihard" if d[a, n] < d[a, p] + m else "easy"
                    counts[kind] += 1
    got = triplet_counts(x, labels, margin=m, distance=distance, backend=backend)
    assert {key: got[key] for key in counts} == counts


@pytest.mark.parametrize("distance", NEW)
def test_large_classes_take_the_sorting_kernels_with_negative_and_asymmetric_distances(distance):
    """Classes beyond the sweep's size (Numba sorts each row with its radix sort, which orders negative dot
    distances too): numba equals numpy for batch-all, FaceNet semi-hard and the triplet counts."""
    rng = np.random.default_rng(11)
    x, labels = rng.standard_normal((120, 6)), np.repeat(np.arange(3), 40)
    for options in ({"mining": "all"}, {"mining": "all_semihard"}, {"mining": "semihard"}):
        value, grad = ml.triplet_loss(x, labels, distance=distance, margin=0.4, backend="numba", **options)
        expected_value, expected_grad = ml.triplet_loss(
            x, labels, distance=distance, margin=0.4, backend="numpy", **options
        )
        assert value == pytest.approx(expected_value, rel=1e-12)
        assert_close(grad, expected_grad, rtol=1e-11)
    got = triplet_counts(x, labels, margin=0.4, distance=distance, backend="numba")
    assert got == triplet_counts(x, labels, margin=0.4, distance=distance, backend="numpy")


@pytest.mark.parametrize("distance", NEW)
def test_mine_dataset_and_retrieval_metrics_rank_by_the_distance(rng, distance):
    """Exact offline mining and the retrieval metrics use the distance as given (the SNR anchor is the query):
    checked against loops over PML's matrix; faiss's inner-product search agrees for "dot"."""
    x, labels = pk_batch(rng, np.float64, p=5, k=5)
    d = pml_matrix(distance, x)
    np.fill_diagonal(d, np.nan)
    positives, negatives = mine_dataset(x, labels, distance=distance, chunk_size=7)
    same = labels[:, None] == labels[None, :]
    np.testing.assert_array_equal(positives, np.nanargmax(np.where(same, d, np.nan), axis=1))
    np.testing.assert_array_equal(negatives, np.nanargmin(np.where(same, np.nan, d), axis=1))
    nearest = np.nanargmin(d, axis=1)
    assert ml.precision_at_1(x, labels, distance=distance) == pytest.approx(np.mean(labels[nearest] == labels))
    if distance == "dot":
        for got, expected in zip(
            mine_dataset(x, labels, distance="dot", use_faiss=True, n_neighbours=4), (positives, negatives), strict=True
        ):
            np.testing.assert_array_equal(got, expected)
        assert ml.precision_at_1(x, labels, distance="dot", use_faiss=True) == pytest.approx(
            np.mean(labels[nearest] == labels)
        )


@pytest.mark.parametrize("distance", NEW)
def test_rank_window_negatives_draw_from_the_window_of_the_distance_ranking(rng, distance):
    """Every draw lies in ranks lo..hi of the query's list ordered by PML's matrix (the query the SNR anchor)."""
    queries, refs = rng.standard_normal((6, 5)), rng.standard_normal((30, 5))
    drawn = rank_window_negatives(queries, refs, n=4, lo=3, hi=9, distance=distance, rng=0)
    ranked = np.argsort(pml_matrix(distance, queries, refs), axis=1, kind="stable")
    for row, window in zip(drawn, ranked[:, 2:9], strict=True):
        assert set(row) <= set(window) and len(set(row)) == 4


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", NEW)
def test_losses_built_on_symmetric_nonnegative_distances_refuse_them_by_name(rng, distance):
    x, labels = pk_batch(rng, np.float64)
    message = f"distance must be one of 'euclidean', 'sqeuclidean', 'cosine'; got '{distance}'"
    calls = [
        lambda: ml.lifted_structure_loss(x, labels, distance=distance),
        lambda: ml.generalized_lifted_structure_loss(x, labels, distance=distance),
        lambda: ml.margin_loss(x, labels, distance=distance),
        lambda: ml.triplet_center_loss(x, labels, distance=distance),
        lambda: ml.quadruplet_loss(x, labels, distance=distance),
        lambda: ml.quadruplet_margin_loss(x[:4], x[4:8], x[8:12], x[12:16], distance=distance),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_faiss_has_no_snr_search_and_margins_below_zero_need_dot(rng):
    x, labels = pk_batch(rng, np.float64)
    with pytest.raises(ValueError, match="use_faiss=True cannot search distance='snr'"):
        mine_dataset(x, labels, distance="snr", use_faiss=True)
    with pytest.raises(ValueError, match="use_faiss=True cannot search distance='snr'"):
        ml.precision_at_1(x, labels, distance="snr", use_faiss=True)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        ml.contrastive_loss(x, labels, distance="snr", margin=-0.5)
    with pytest.raises(ValueError, match=r"pos_margin must be >= -1e\+18 and <= 1e\+18"):
        ml.contrastive_loss(x, labels, distance="dot", pos_margin=-1e19)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        ml.triplet_loss(x, labels, distance="dot", margin=-0.5)
