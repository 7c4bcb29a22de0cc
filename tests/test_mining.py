"""The mining API against brute force (every triplet enumerated in Python) and against pytorch-metric-learning's
miners; the samplers' promises (classes, counts, seeds, refusals)."""

import itertools
import tracemalloc

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

import metricloss as ml
from metricloss.mining import TRIPLET_KINDS


def brute_force_triplets(x, labels, kind, margin):
    """Every (a, p, n) of ``kind`` by enumeration, with the module's definitions."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    found = set()
    for a, p, n in itertools.product(range(len(x)), repeat=3):
        if a == p or labels[a] != labels[p] or labels[a] == labels[n]:
            continue
        d_ap, d_an = d[a, p], d[a, n]
        is_kind = {
            "all": True,
            "active": d_an < d_ap + margin,
            "easy": d_an >= d_ap + margin,
            "semihard": d_ap <= d_an < d_ap + margin,
            "hard": d_an < d_ap and d_an < d_ap + margin,
        }[kind]
        if is_kind:
            found.add((a, p, n))
    return found


def as_set(triplets):
    return set(zip(*(t.tolist() for t in triplets), strict=True))


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return 0.7 * rng.standard_normal((18, 3)), rng.integers(0, 4, size=18)


def test_classify_triplets_by_the_stated_conditions():
    d_ap = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    d_an = np.array([2.0, 1.999, 1.0, 0.999, 3.0])
    kinds = ml.classify_triplets(d_ap, d_an, margin=1.0)
    assert [TRIPLET_KINDS[k] for k in kinds] == ["easy", "semihard", "semihard", "hard", "easy"]


def test_a_negative_margin_leaves_only_triplets_wrong_by_more_than_it_active_and_all_hard():
    d_ap = np.ones(4)
    d_an = np.array([0.5, 0.8, 1.2, 0.69])
    kinds = ml.classify_triplets(d_ap, d_an, margin=-0.3)
    assert [TRIPLET_KINDS[k] for k in kinds] == ["hard", "easy", "easy", "hard"]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("margin", [0.8, -0.3])
def test_triplet_counts_match_brute_force(batch, margin, backend):
    x, labels = batch
    counts = ml.triplet_counts(x, labels, margin=margin, backend=backend)
    for kind in TRIPLET_KINDS:
        assert counts[kind] == len(brute_force_triplets(x, labels, kind, margin))
    assert counts["valid"] == len(brute_force_triplets(x, labels, "all", margin))
    assert counts["active_fraction"] == (counts["semihard"] + counts["hard"]) / counts["valid"]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("margin", [0.8, -0.3])
@pytest.mark.parametrize("kind", ml.MINED_TRIPLETS)
def test_mine_triplets_finds_exactly_the_brute_force_set(batch, kind, margin, backend):
    x, labels = batch
    mined = ml.mine_triplets(x, labels, kind=kind, margin=margin, backend=backend)
    assert as_set(mined) == brute_force_triplets(x, labels, kind, margin)
    assert len(mined[0]) == len(as_set(mined))  # no duplicates


def test_the_cap_samples_a_subset_per_anchor_reproducibly(batch):
    x, labels = batch
    full = brute_force_triplets(x, labels, "all", 1.0)
    capped = ml.mine_triplets(x, labels, max_per_anchor=3, rng=7)
    assert as_set(capped) <= full
    anchors, counts = np.unique(capped[0], return_counts=True)
    available = {a: sum(1 for t in full if t[0] == a) for a in anchors}
    assert all(c == min(3, available[a]) for a, c in zip(anchors, counts, strict=True))
    again = ml.mine_triplets(x, labels, max_per_anchor=3, rng=np.random.default_rng(7))
    assert all(np.array_equal(u, v) for u, v in zip(capped, again, strict=True))
    other = ml.mine_triplets(x, labels, max_per_anchor=3, rng=8)
    assert as_set(other) != as_set(capped)


def test_a_cap_keeps_memory_quadratic_when_the_full_set_is_cubic():
    """Two classes of 400: 400·399·400·2 ≈ 128 million triplets (3 GB of indices); a cap of 5 needs kilobytes."""
    n = 800
    x = np.random.default_rng(1).standard_normal((n, 8))
    labels = np.repeat([0, 1], n // 2)
    tracemalloc.start()
    a, _, _ = ml.mine_triplets(x, labels, max_per_anchor=5, rng=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(a) == 5 * n
    assert peak <= 3 * n * n * x.itemsize


def test_no_valid_triplet_gives_empty_index_arrays():
    a, p, n = ml.mine_triplets(np.eye(3), np.array([0, 1, 2]))
    assert a.size == p.size == n.size == 0 and a.dtype == np.int64


# --- pytorch-metric-learning miners ---------------------------------------------------------------------------


def pml_lp():
    return pml_distances.LpDistance(normalize_embeddings=False)


@pytest.mark.parametrize("margin", [0.8, -0.3])
@pytest.mark.parametrize(
    ("pml_type", "kind"), [("all", "active"), ("semihard", "semihard"), ("hard", "hard"), ("easy", "easy")]
)
def test_mine_triplets_equals_pml_triplet_margin_miner(batch, pml_type, kind, margin):
    """Negative margins included: PML's miner accepts them, and its four types keep mapping onto the kinds."""
    x, labels = batch
    miner = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=pml_type, distance=pml_lp())
    theirs = miner(torch.tensor(x), torch.as_tensor(labels))
    ours = ml.mine_triplets(x, labels, kind=kind, margin=margin)
    assert as_set(ours) == as_set(theirs)
    assert margin > 0 or kind != "semihard" or not as_set(ours)  # below 0 the semi-hard band is empty


@pytest.mark.parametrize("margins", [(0.3, 1.1), (-0.5, 0.9)])
def test_mine_pairs_equals_pml_pair_margin_miner(batch, margins):
    """PML's PairMarginMiner(pos_margin, neg_margin): the same pairs in the same order, negative margins too."""
    x, labels = batch
    pos_margin, neg_margin = margins
    miner = pml_miners.PairMarginMiner(pos_margin=pos_margin, neg_margin=neg_margin, distance=pml_lp())
    theirs = miner(torch.tensor(x), torch.as_tensor(labels))
    ours = ml.mine_pairs(x, labels, pos_margin=pos_margin, margin=neg_margin)
    assert ours[0].size and ours[2].size
    for mine, their in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine, their.numpy())


def test_pairs_to_triplets_refuses_what_is_not_pairs_of_indices_by_name():
    one = np.array([0])
    with pytest.raises(TypeError, match=r"^positives must be a 1-D integer index array; got dtype float64"):
        ml.pairs_to_triplets(one, np.array([1.0]), one, one)
    with pytest.raises(TypeError, match=r"^negative_anchors must be a 1-D integer index array; .*shape \(1, 1\)"):
        ml.pairs_to_triplets(one, one, np.array([[0]]), one)
    with pytest.raises(ValueError, match=r"^negatives must hold indices >= 0; got -2"):
        ml.pairs_to_triplets(one, one, one, np.array([-2]))
    with pytest.raises(ValueError, match=r"^positives must have one entry per positive_anchor: 1; got 2"):
        ml.pairs_to_triplets(one, np.array([1, 2]), one, one)
    empty = ml.pairs_to_triplets([], [], one, one)  # no positive pair: no triplet
    assert all(t.size == 0 and t.dtype == np.int64 for t in empty)


def test_mine_pairs_with_references_and_all_pairs():
    x, labels = np.array([[0.0], [1.0]]), np.array([0, 1])
    refs, ref_labels = np.array([[0.0], [0.5], [4.0]]), np.array([0, 1, 1])
    a1, p, a2, n = ml.mine_pairs(x, labels, kind="all", ref_embeddings=refs, ref_labels=ref_labels)
    assert (a1.tolist(), p.tolist(), a2.tolist(), n.tolist()) == ([0, 1, 1], [0, 1, 2], [0, 0, 1], [1, 2, 0])
    a1, p, a2, n = ml.mine_pairs(x, labels, ref_embeddings=refs, ref_labels=ref_labels)  # d > 0, d < 1
    assert (a1.tolist(), p.tolist(), a2.tolist(), n.tolist()) == ([1, 1], [1, 2], [0], [1])


def test_batch_triplets_equals_pml_batch_hard_miner(batch):
    x, labels = batch
    labels[0] = 77  # an anchor without positives is left out by both
    theirs = pml_miners.BatchHardMiner(distance=pml_lp())(torch.tensor(x), torch.as_tensor(labels))
    assert as_set(ml.batch_triplets(x, labels)) == as_set(theirs)


# BatchEasyHardMiner's (pos_strategy, neg_strategy) and batch_triplets' (positive, negative) for the same choice
EASY_HARD_STRATEGIES = [
    ("easy", "semihard", "easiest", "semihard"),
    ("easy", "hard", "easiest", "hardest"),
    ("hard", "easy", "hardest", "easiest"),
    ("semihard", "hard", "semihard", "hardest"),
]


@pytest.mark.parametrize(("pos_strategy", "neg_strategy", "positive", "negative"), EASY_HARD_STRATEGIES)
def test_batch_triplets_equals_pml_batch_easy_hard_miner(batch, pos_strategy, neg_strategy, positive, negative):
    x, labels = batch
    miner = pml_miners.BatchEasyHardMiner(pos_strategy=pos_strategy, neg_strategy=neg_strategy, distance=pml_lp())
    a, p, a2, n = miner(torch.tensor(x), torch.as_tensor(labels))
    assert torch.equal(a, a2)
    ours = ml.batch_triplets(x, labels, positive=positive, negative=negative)
    assert as_set(ours) == as_set((a, p, n))


@pytest.mark.parametrize(
    ("pos_strategy", "neg_strategy"),
    [("all", "hard"), ("all", "easy"), ("easy", "all"), ("hard", "all"), ("all", "all")],
)
def test_pml_batch_easy_hard_all_strategies_are_pairs_to_triplets(batch, pos_strategy, neg_strategy):
    """BatchEasyHardMiner with an "all" side returns pairs, which PML's triplet loss turns into triplets: every
    pair of that side (no range applies to it in PML) with the other side's one choice per anchor. Here that is
    pairs_to_triplets of mine_pairs(kind="all") and batch_triplets' choice."""
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    x, labels = batch
    ranges = {"positive_range": (0.4, 2.0), "negative_range": (0.3, 1.6)}
    miner = pml_miners.BatchEasyHardMiner(
        pos_strategy=pos_strategy,
        neg_strategy=neg_strategy,
        allowed_pos_range=ranges["positive_range"],
        allowed_neg_range=ranges["negative_range"],
        distance=pml_lp(),
    )
    target = torch.as_tensor(labels)
    theirs = lmu.convert_to_triplets(miner(torch.tensor(x), target), target)
    a1, p, a2, n = ml.mine_pairs(x, labels, kind="all")
    chosen = {"hard": "hardest", "easy": "easiest"}
    if pos_strategy == neg_strategy == "all":
        ours = ml.mine_triplets(x, labels, kind="all")
    elif pos_strategy == "all":
        a, _, negatives = ml.batch_triplets(
            x, labels, negative=chosen[neg_strategy], negative_range=ranges["negative_range"]
        )
        ours = ml.pairs_to_triplets(a1, p, a, negatives)
    else:
        a, positives, _ = ml.batch_triplets(
            x, labels, positive=chosen[pos_strategy], positive_range=ranges["positive_range"]
        )
        ours = ml.pairs_to_triplets(a, positives, a2, n)
    assert len(ours[0]) > len(x)
    assert as_set(ours) == as_set(theirs)


@pytest.mark.parametrize(("pos_strategy", "neg_strategy", "positive", "negative"), EASY_HARD_STRATEGIES)
def test_batch_triplets_with_distance_ranges_equals_pml_allowed_ranges(
    batch, pos_strategy, neg_strategy, positive, negative
):
    """BatchEasyHardMiner's allowed_pos_range / allowed_neg_range are positive_range / negative_range: ranges cut
    from the batch's own positive and negative distances, so that some candidates are out of range and some
    anchors have none left (and are left out by both)."""
    x, labels = batch
    d = ml.pairwise_distances(x)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None, :]
    positive_range = tuple(float(q) for q in np.quantile(d[same], [0.3, 0.7]))
    negative_range = tuple(float(q) for q in np.quantile(d[other], [0.05, 0.5]))
    miner = pml_miners.BatchEasyHardMiner(
        pos_strategy=pos_strategy,
        neg_strategy=neg_strategy,
        allowed_pos_range=positive_range,
        allowed_neg_range=negative_range,
        distance=pml_lp(),
    )
    a, p, a2, n = miner(torch.tensor(x), torch.as_tensor(labels))
    assert torch.equal(a, a2)
    ours = ml.batch_triplets(
        x, labels, positive=positive, negative=negative, positive_range=positive_range, negative_range=negative_range
    )
    assert 0 < len(ours[0]) < len(x)  # the ranges leave some anchors out, not all
    assert as_set(ours) == as_set((a, p, n))


def test_batch_triplets_refuses_a_range_that_is_not_a_pair_low_high(batch):
    with pytest.raises(TypeError, match="positive_range must be a pair"):
        ml.batch_triplets(*batch, positive_range=0.5)
    with pytest.raises(ValueError, match=r"negative_range\[1\]"):
        ml.batch_triplets(*batch, negative_range=(0.5, 0.2))


def test_batch_triplets_refuses_two_semihard_sides(batch):
    with pytest.raises(ValueError, match="positive and negative cannot both be 'semihard'"):
        ml.batch_triplets(*batch, positive="semihard", negative="semihard")


# --- offline mining over a dataset ----------------------------------------------------------------------------


def brute_force_dataset(x, labels, negative):
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    positives, negatives = [], []
    for a in range(len(x)):
        pos = [j for j in range(len(x)) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(len(x)) if labels[j] != labels[a]]
        p = max(pos, key=lambda j: d[a, j]) if pos else -1
        if negative == "semihard":
            neg = [j for j in neg if p >= 0 and d[a, j] > d[a, p]]
        positives.append(p)
        negatives.append(min(neg, key=lambda j: d[a, j]) if neg else -1)
    return np.array(positives), np.array(negatives)


@pytest.mark.parametrize("negative", ["hardest", "semihard"])
def test_mine_dataset_equals_brute_force_in_any_chunking(negative):
    rng = np.random.default_rng(2)
    x, labels = rng.standard_normal((150, 6)), rng.integers(0, 5, size=150)
    labels[7] = 42  # a sample with no positive
    expected = brute_force_dataset(x, labels, negative)
    calls = []
    for chunk_size in (1, 16, 150, 1000):
        got = ml.mine_dataset(x, labels, negative=negative, chunk_size=chunk_size, progress=lambda *c: calls.append(c))
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert calls[-1] == (150, 150) and (16, 150) in calls


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("negative", ["hardest", "semihard"])
def test_mine_dataset_with_faiss_equals_the_exact_path(negative, distance):
    pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; this runs where it is installed")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    labels = rng.integers(0, 20, size=3000)
    exact = ml.mine_dataset(x, labels, negative=negative, distance=distance, chunk_size=700)
    fast = ml.mine_dataset(
        x, labels, negative=negative, distance=distance, chunk_size=700, use_faiss=True, n_neighbours=8
    )
    np.testing.assert_array_equal(fast[0], exact[0])
    np.testing.assert_array_equal(fast[1], exact[1])


def test_mine_dataset_checks_its_arguments():
    x, labels = np.ones((4, 2)), np.arange(4)
    with pytest.raises(ValueError, match="negative must be one of 'hardest', 'semihard'"):
        ml.mine_dataset(x, labels, negative="easiest")
    with pytest.raises(TypeError, match="progress must be a callable"):
        ml.mine_dataset(x, labels, progress=3)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        ml.mine_dataset(x, labels, chunk_size=0)


# --- samplers and negatives -----------------------------------------------------------------------------------


def test_pk_batches_hold_p_classes_of_k_samples():
    labels = np.repeat(np.arange(10), [8, 8, 8, 8, 8, 8, 8, 8, 2, 1])  # two classes smaller than k
    batches = list(ml.pk_batches(labels, p=4, k=3, n_batches=200, rng=0))
    assert len(batches) == 200
    seen = set()
    for indices in batches:
        assert indices.shape == (12,)
        groups = labels[indices].reshape(4, 3)
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 4
        seen.update(groups[:, 0].tolist())
        for group, idx in zip(groups[:, 0], indices.reshape(4, 3), strict=True):
            if group < 8:
                assert len(set(idx.tolist())) == 3  # without replacement where the class is large enough
    assert seen == set(range(10))  # the small classes appear too, with replacement
    again = list(ml.pk_batches(labels, p=4, k=3, n_batches=200, rng=0))
    assert all(np.array_equal(u, v) for u, v in zip(batches, again, strict=True))
    assert len(list(ml.pk_batches(labels, p=4, k=3))) == len(labels) // 12


def test_pk_batches_refuses_more_classes_than_exist():
    with pytest.raises(ValueError, match="p must be at most the number of classes, 3; got 4"):
        next(ml.pk_batches(np.array([0, 1, 2, 2]), p=4, k=2))
    with pytest.raises(ValueError, match="k must be >= 1"):
        next(ml.pk_batches(np.array([0, 1]), p=1, k=0))


def test_random_negatives_are_distinct_references_of_other_classes():
    query_labels, ref_labels = np.array([0, 1, 2, 0]), np.repeat(np.arange(4), 5)
    negatives = ml.random_negatives(query_labels, ref_labels, n=6, rng=1)
    assert negatives.shape == (4, 6)
    for q, row in enumerate(negatives):
        assert len(set(row.tolist())) == 6 and (ref_labels[row] != query_labels[q]).all()
    np.testing.assert_array_equal(negatives, ml.random_negatives(query_labels, ref_labels, n=6, rng=1))
    with pytest.raises(ValueError, match="n must be at most the number of references outside class 0, 15; got 16"):
        ml.random_negatives(query_labels, ref_labels, n=16)


def test_rank_window_negatives_come_from_the_window_of_each_retrieval_list():
    rng = np.random.default_rng(4)
    queries, refs = rng.standard_normal((20, 4)), rng.standard_normal((300, 4))
    query_labels, ref_labels = rng.integers(0, 3, size=20), rng.integers(0, 3, size=300)
    picks = ml.rank_window_negatives(
        queries, refs, n=5, lo=11, hi=40, query_labels=query_labels, ref_labels=ref_labels, chunk_size=7, rng=0
    )
    d = np.sqrt(((queries[:, None, :] - refs[None, :, :]) ** 2).sum(-1))
    for q, row in enumerate(picks):
        candidates = np.flatnonzero(ref_labels != query_labels[q])
        ranked = candidates[np.argsort(d[q, candidates], kind="stable")]
        assert set(row.tolist()) <= set(ranked[10:40].tolist()) and len(set(row.tolist())) == 5
    without_labels = ml.rank_window_negatives(queries, refs, n=3, lo=1, hi=3, rng=0)
    np.testing.assert_array_equal(np.sort(without_labels, axis=1), np.sort(np.argsort(d, axis=1)[:, :3], axis=1))
    with pytest.raises(ValueError, match="must hold at least n = 5"):
        ml.rank_window_negatives(queries, refs, n=5, lo=10, hi=12)


# --- labels of every integer dtype: identities, compared exactly ----------------------------------------------

_LABEL_DTYPE_PAIRS = [
    (np.uint64, np.uint64),
    (np.int64, np.uint64),
    (np.uint64, np.int64),
    (np.int8, np.uint64),
    (np.int64, np.int64),
    (np.uint8, np.int16),
    (np.int32, np.uint32),
]


def _extreme_labelled(query_dtype, ref_dtype, n_queries=12, n_refs=15):
    """Query and reference labels over three shared classes (the two ends of the range both dtypes hold, and the
    one below the top: the same float64 number when the top is 2⁶³ - 1), a query-only class (the query dtype's
    minimum) and a reference-only class (the reference dtype's maximum): as arrays of those dtypes, and the same
    classes numbered by the rank of their values (Python ints) in int64."""
    q_info, r_info = np.iinfo(query_dtype), np.iinfo(ref_dtype)
    low, high = max(int(q_info.min), int(r_info.min)), min(int(q_info.max), int(r_info.max))
    query_only = int(q_info.min) if int(q_info.min) < low else high - 2  # distinct from the shared classes
    ref_only = int(r_info.max) if int(r_info.max) > high else low + 1
    query_values = [[low, high, high - 1, query_only][i % 4] for i in range(n_queries)]
    ref_values = [[low, high, high - 1, ref_only][i % 4] for i in range(n_refs)]
    rank = {v: r for r, v in enumerate(sorted({*query_values, *ref_values}))}
    return (
        np.array(query_values, dtype=query_dtype),
        np.array(ref_values, dtype=ref_dtype),
        np.array([rank[v] for v in query_values]),
        np.array([rank[v] for v in ref_values]),
    )


@pytest.mark.parametrize(("query_dtype", "ref_dtype"), _LABEL_DTYPE_PAIRS, ids=lambda t: np.dtype(t).name)
def test_mining_compares_labels_of_any_integer_dtypes_exactly(query_dtype, ref_dtype):
    """Every mining function and recall@k gives the same result with labels at the extremes of their dtypes
    (uint64 beyond 2⁶³ against negative int64, int64 beyond 2⁵³ against uint64) as with the classes numbered by
    rank: labels are compared as identities, never wrapped to int64 nor compared through float64."""
    rng = np.random.default_rng(12)
    x, refs = rng.standard_normal((12, 3)), rng.standard_normal((15, 3))
    labels, ref_labels, small, small_ref = _extreme_labelled(query_dtype, ref_dtype)

    def mined(labels, ref_labels):
        with_refs = {"ref_embeddings": refs, "ref_labels": ref_labels}
        return [
            ml.triplet_counts(x, labels, **with_refs),
            *ml.mine_triplets(x, labels, kind="all", max_per_anchor=5, rng=0, **with_refs),
            *ml.batch_triplets(x, labels, **with_refs),
            *ml.sampling.mine_dataset(x, labels, negative="semihard"),
            *ml.sampling.mine_dataset(x, labels, use_faiss=True, n_neighbours=2),
            *ml.pk_batches(labels, p=2, k=2, n_batches=3, rng=0),
            ml.random_negatives(labels, ref_labels, n=4, rng=0),
            ml.rank_window_negatives(x, refs, n=2, lo=2, hi=5, query_labels=labels, ref_labels=ref_labels, rng=0),
            ml.recall_at_k(x, labels, k=2),
        ]

    for got, expected in zip(mined(labels, ref_labels), mined(small, small_ref), strict=True):
        if isinstance(got, dict):
            assert got == expected
        else:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("with_references", [False, True])
def test_positive_entries_are_the_positive_mask_in_row_major_order(with_references):
    """LabelledBatch.positive_entries builds the (anchor, positive) entries from the class lists; they are exactly
    np.nonzero of candidate_masks' positive mask (the anchor itself excluded within one batch; query classes that
    no reference has give no entry), over random batches with singletons and one-class batches."""
    from metricloss._batch import candidate_masks, labelled_batch

    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 30))
        x, labels = rng.standard_normal((n, 3)), rng.integers(0, int(rng.integers(1, 8)), n)
        references = {}
        if with_references:
            m = int(rng.integers(1, 20))
            references = {"ref_embeddings": rng.standard_normal((m, 3)), "ref_labels": rng.integers(0, 6, m)}
        batch = labelled_batch(x, labels, similarity="dot", **references)
        rows, cols = batch.positive_entries()
        expected_rows, expected_cols = np.nonzero(candidate_masks(batch)[0])
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(cols, expected_cols)


# --- the engine's triplet selections, which the losses mine with (metricloss._triplets) -----------------------


def _selection_batches(with_references):
    """Small random labelled batches, singletons and one-class batches among them, with integer-valued distances'
    ties (features in {0, 1, 2}), as the engine's batches."""
    from metricloss._batch import labelled_batch

    rng = np.random.default_rng(4)
    for _ in range(40):
        n = int(rng.integers(1, 16))
        x, labels = rng.integers(0, 3, (n, 2)).astype(float), rng.integers(0, int(rng.integers(1, 5)), n)
        references = {}
        if with_references:
            m = int(rng.integers(1, 12))
            references = {"ref_embeddings": rng.integers(0, 3, (m, 2)).astype(float)}
            references["ref_labels"] = rng.integers(0, 4, m)
        yield labelled_batch(x, labels, distance="sqeuclidean", backend="numpy", **references)


def _candidates(batch, a):
    from metricloss._batch import candidate_masks

    positives, negatives = candidate_masks(batch)
    return np.flatnonzero(positives[a]), np.flatnonzero(negatives[a])


@pytest.mark.parametrize("with_references", [False, True])
def test_hardest_triplets_take_the_farthest_positive_and_closest_negative(with_references):
    """Batch-hard by a loop over anchors: argmax / argmin take the lowest index among ties; ``"keep"`` keeps an
    anchor with one side missing (p = -1, or n the farthest other reference)."""
    from metricloss._triplets import hardest_triplets

    for batch in _selection_batches(with_references):
        expected = {"drop": [], "keep": []}
        for a in range(batch.d.shape[0]):
            positives, negatives = _candidates(batch, a)
            p = positives[np.argmax(batch.d[a, positives])] if positives.size else -1
            n = negatives[np.argmin(batch.d[a, negatives])] if negatives.size else -1
            if p >= 0 and n >= 0:
                expected["drop"].append((a, p, n))
            if n < 0 and p >= 0:  # no negative: the farthest other reference
                others = np.union1d(positives, negatives)
                n = others[np.argmax(batch.d[a, others])]
            if p >= 0 or negatives.size:
                expected["keep"].append((a, p, n))
        for incomplete_anchors, triplets in expected.items():
            got = hardest_triplets(batch, incomplete_anchors)
            assert list(zip(*(t.tolist() for t in got), strict=True)) == triplets


@pytest.mark.parametrize("with_references", [False, True])
def test_semihard_triplets_take_the_closest_farther_negative_or_the_farthest(with_references):
    """TF-Addons' semi-hard rule by a loop over positive pairs: the closest negative with d_an > d_ap, else the
    farthest negative; ties to the lowest index; pairs whose anchor has no negative left out."""
    from metricloss._triplets import semihard_triplets

    for batch in _selection_batches(with_references):
        expected = []
        for a in range(batch.d.shape[0]):
            positives, negatives = _candidates(batch, a)
            if not negatives.size:
                continue
            for p in positives:
                farther = negatives[batch.d[a, negatives] > batch.d[a, p]]
                if farther.size:
                    n = farther[np.argmin(batch.d[a, farther])]
                else:
                    n = negatives[np.argmax(batch.d[a, negatives])]
                expected.append((a, p, n))
        got = semihard_triplets(batch)
        assert list(zip(*(t.tolist() for t in got), strict=True)) == expected
