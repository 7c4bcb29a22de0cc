"""Retrieval metrics (metricloss.metrics): hand-checked cases, equality with pytorch-metric-learning's
AccuracyCalculator (ties in distance included), chunked = unchunked, faiss = exact, peak memory, bad input."""

import tracemalloc

import numpy as np
import pytest

import metricloss as ml
from metricloss.metrics import _per_query_scores

NAMES = ("precision_at_1", "r_precision", "mean_average_precision_at_r", "mean_reciprocal_rank")
FUNCTIONS = {
    "precision_at_1": ml.precision_at_1,
    "r_precision": ml.r_precision,
    "mean_average_precision_at_r": ml.mean_average_precision_at_r,
    "mean_reciprocal_rank": ml.mean_reciprocal_rank,
}


def test_hand_checked_leave_one_out():
    """x = 0, 0.4, 0.1, 1.0, 1.2 (one feature), classes 0, 0, 1, 1, 1. Each query's others, nearest first (class):

    - q0 (class 0, R=1): 2 (1) at 0.1, 1 (0) at 0.4, ...: P@1 0, first relevant at rank 2, R-prec 0, AP@R 0;
    - q1 (class 0, R=1): 2 (1) at 0.3, 0 (0) at 0.4, ...: P@1 0, first at 2, R-prec 0, AP@R 0;
    - q2 (class 1, R=2): 0 (0) at 0.1, 1 (0) at 0.3, 3 (1) at 0.9: P@1 0, first at 3, R-prec 0, AP@R 0;
    - q3 (class 1, R=2): 4 (1) at 0.2, 1 (0) at 0.6, 2 (1) at 0.9: P@1 1, first at 1, R-prec 1/2, AP@R (1/1)/2;
    - q4 (class 1, R=2): 3 (1) at 0.2, 1 (0) at 0.8, 2 (1) at 1.1: P@1 1, first at 1, R-prec 1/2, AP@R 1/2.

    Means over queries: P@1 2/5, Recall@2 4/5 (q2 misses), R-prec 1/5, MAP@R 1/5, MRR (1/2+1/2+1/3+1+1)/5 = 10/15.
    Over classes: P@1 (0 + 2/3)/2 = 1/3, R-prec (0 + 1/3)/2 = 1/6, MRR (1/2 + (1/3+2)/3)/2 = 1/4 + 7/18 = 23/36.
    """
    x, labels = np.array([[0.0], [0.4], [0.1], [1.0], [1.2]]), np.array([0, 0, 1, 1, 1])
    got = ml.retrieval_metrics(x, labels, k=(2, 1))
    expected = {
        "precision_at_1": 2 / 5,
        "recall_at_2": 4 / 5,
        "recall_at_1": 2 / 5,
        "r_precision": 1 / 5,
        "mean_average_precision_at_r": 1 / 5,
        "mean_reciprocal_rank": 10 / 15,
    }
    assert list(got) == list(expected)  # the Recall@K keys in the order given
    np.testing.assert_allclose([got[name] for name in expected], list(expected.values()), rtol=1e-15)
    by_class = ml.retrieval_metrics(x, labels, average="classes")
    np.testing.assert_allclose(
        [by_class[name] for name in ("precision_at_1", "r_precision", "mean_reciprocal_rank")],
        [1 / 3, 1 / 6, 23 / 36],
        rtol=1e-15,
    )
    for name, function in FUNCTIONS.items():
        assert function(x, labels) == got[name]
    assert ml.recall_at_k(x, labels, k=2) == got["recall_at_2"]


def test_hand_checked_average_precision_rewards_early_hits():
    """One query at 0 against references at 1 (class 0), 2 (class 1), 3 (class 0), 4 (class 0): R = 3, the ranking
    is relevant, not, relevant, relevant. Precision at the relevant ranks among the first R = 3: 1/1 and 2/3, so
    AP@R = (1 + 2/3)/3 = 5/9; R-precision = 2/3 (the 4th, relevant, lies beyond R); MRR 1; Recall@2 1."""
    query, refs = np.array([[0.0]]), np.array([[1.0], [2.0], [3.0], [4.0]])
    got = ml.retrieval_metrics(query, np.array([0]), ref_embeddings=refs, ref_labels=np.array([0, 1, 0, 0]), k=2)
    assert got["mean_average_precision_at_r"] == pytest.approx(5 / 9, rel=1e-15)
    assert got["r_precision"] == pytest.approx(2 / 3, rel=1e-15)
    assert got["precision_at_1"] == got["recall_at_2"] == got["mean_reciprocal_rank"] == 1.0


def test_hand_checked_ties_go_to_the_lowest_reference_index():
    """A query at 0 of class 0, references at -1 and +1, both at distance 1. With the other class first (index 0),
    the tie goes to it: P@1 0, the relevant one second, MRR 1/2. Swapped, P@1 1 and MRR 1. With exact duplicates
    of the query in leave-one-out, the same rule ranks duplicates (distance 0) by index."""
    query, refs = np.array([[0.0]]), np.array([[-1.0], [1.0]])
    first_other = ml.retrieval_metrics(query, np.array([0]), ref_embeddings=refs, ref_labels=np.array([1, 0]))
    assert first_other["precision_at_1"] == 0.0 and first_other["mean_reciprocal_rank"] == 0.5
    first_same = ml.retrieval_metrics(query, np.array([0]), ref_embeddings=refs, ref_labels=np.array([0, 1]))
    assert first_same["precision_at_1"] == 1.0 and first_same["mean_reciprocal_rank"] == 1.0
    # Three identical rows, classes 1, 0, 0. q0's others: 1 (0), 2 (0), both at 0: no relevant, q0 is lone (R=0).
    # q1 (R=1): 0 (class 1) first by index, then 2: P@1 0, MRR 1/2. q2 (R=1): 0 (class 1), then 1: likewise.
    same = np.zeros((3, 2))
    got = ml.retrieval_metrics(same, np.array([1, 0, 0]))
    assert got["precision_at_1"] == 0.0 and got["mean_reciprocal_rank"] == 0.5


def test_ref_includes_query_skips_each_query_itself():
    """Queries at 0 (class 0) and 5 (class 1); the reference is them followed by 0.5 (class 1) and 4 (class 0).
    With ref_includes_query, query 0 skips reference 0: its ranking is 0.5 (1), 4 (0), 5 (1), R = 1: P@1 0,
    MRR 1/2, R-precision 0; query 1 skips reference 1: 4 (0), 0.5 (1), 0 (0), R = 1: likewise. Without it, each
    query finds its own copy first and R counts it (R = 2): query 0 ranks 0 (0), 0.5 (1), so P@1 1, R-precision
    1/2, AP@R (1/1)/2 = 1/2; query 1 ranks 5 (1), 4 (0): the same."""
    queries, labels = np.array([[0.0], [5.0]]), np.array([0, 1])
    refs, ref_labels = np.array([[0.0], [5.0], [0.5], [4.0]]), np.array([0, 1, 1, 0])
    skip = ml.retrieval_metrics(queries, labels, ref_embeddings=refs, ref_labels=ref_labels, ref_includes_query=True)
    assert skip["precision_at_1"] == 0.0 and skip["mean_reciprocal_rank"] == 0.5 and skip["r_precision"] == 0.0
    keep = ml.retrieval_metrics(queries, labels, ref_embeddings=refs, ref_labels=ref_labels)
    assert keep["precision_at_1"] == 1.0 and keep["r_precision"] == 0.5 and keep["mean_average_precision_at_r"] == 0.5


def _dataset(kind, seed):
    """float32 embeddings and labels with 10 classes and three singleton classes, as PML sees them (float32)."""
    rng = np.random.default_rng(seed)
    n = 240
    if kind == "grid":  # small integers: every distance exact in float32, ties everywhere
        x = rng.integers(0, 3, (n, 3)).astype(np.float32)
    else:
        x = rng.standard_normal((n, 4)).astype(np.float32)
        if kind == "duplicates":  # exact copies, some of another class, some of the same
            source = rng.choice(n, 60, replace=False)
            x[source[30:]] = x[source[:30]]
    labels = rng.integers(0, 10, n)
    labels[[5, 77, 150]] = [100, 101, 102]
    return x, labels


SETTINGS = ("leave-one-out", "query-vs-reference", "reference-includes-queries")


def _split(setting, x, labels):
    """(ours: keyword arguments, PML's get_accuracy positional arguments) for a setting."""
    if setting == "leave-one-out":
        return (x, labels, {}), (x, labels)
    q, q_labels = x[:80], labels[:80]
    if setting == "query-vs-reference":
        refs = {"ref_embeddings": x[80:], "ref_labels": labels[80:]}
        return (q, q_labels, refs), (q, q_labels, x[80:], labels[80:], False)
    refs = {"ref_embeddings": x, "ref_labels": labels, "ref_includes_query": True}
    return (q, q_labels, refs), (q, q_labels, x, labels, True)


@pytest.mark.parametrize("average", ["queries", "classes"])
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("kind", ["continuous", "grid", "duplicates"])
def test_equal_to_pml_accuracy_calculator(kind, setting, average):
    """Our metrics equal AccuracyCalculator(k=None)'s (faiss's exact search, ties by lowest index) over three seeds:
    precision@1, R-precision and MAP@R to 1e-12 (PML sums in another order; one query ranked differently would
    move them by more than 1e-8 here). The mean reciprocal rank is compared exactly, through PML's own float32
    arithmetic and averaging applied to our ranks. Recall@K equals the hit rate of PML's own k-NN lists."""
    torch = pytest.importorskip("torch")
    accuracy = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    calculator = accuracy.AccuracyCalculator(
        include=NAMES, k=None, avg_of_avgs=average == "classes", device=torch.device("cpu")
    )
    for seed in range(3):
        x, labels = _dataset(kind, seed)
        (q, q_labels, refs), pml_args = _split(setting, x, labels)
        theirs = calculator.get_accuracy(*pml_args)
        ours = ml.retrieval_metrics(q, q_labels, k=(1, 3, 10), average=average, **refs)
        for name in NAMES[:3]:
            assert ours[name] == pytest.approx(theirs[name], abs=1e-12, rel=0), (seed, name)
        assert ours["recall_at_1"] == ours["precision_at_1"]

        # MRR: PML computes 1/rank in float32; our ranks through its arithmetic give its value bit for bit.
        ref, ref_labels = refs.get("ref_embeddings", q), refs.get("ref_labels", q_labels)
        excluded = setting != "query-vs-reference"
        r, first = _per_query_scores(q, q_labels, ref, ref_labels, excluded, "euclidean", None, False)[:2]
        reciprocal = torch.tensor(1.0 / first[r > 0], dtype=torch.float32)
        group = torch.tensor(q_labels[r > 0], dtype=torch.float32)[:, None]
        mrr = accuracy.maybe_get_avg_of_avgs(reciprocal, group, average == "classes", False)
        assert mrr == theirs["mean_reciprocal_rank"], seed
        assert ours["mean_reciprocal_rank"] == pytest.approx(theirs["mean_reciprocal_rank"], rel=1e-6)

        # Recall@K from PML's k-NN (its FaissKNN, skipping the query itself the way get_accuracy does).
        _, nearest = calculator.knn_func(torch.tensor(q), 10, torch.tensor(ref), excluded)
        hits = ref_labels[nearest.numpy()] == q_labels[:, None]
        for k in (1, 3, 10):
            per_query = torch.tensor(hits[r > 0, :k].any(axis=1), dtype=torch.float64)
            expected = accuracy.maybe_get_avg_of_avgs(per_query, group, average == "classes", False)
            assert ours[f"recall_at_{k}"] == pytest.approx(expected, abs=1e-15), (seed, k)


def test_chunked_equals_unchunked():
    """Every chunk size, from one query at a time to all at once, gives the same metrics bit for bit."""
    x, labels = _dataset("duplicates", 4)
    for refs in ({}, {"ref_embeddings": x[::-1].copy(), "ref_labels": labels[::-1].copy()}):
        whole = ml.retrieval_metrics(x, labels, k=(1, 5), chunk_size=x.shape[0], **refs)
        for chunk_size in (1, 7, 64, None):
            assert ml.retrieval_metrics(x, labels, k=(1, 5), chunk_size=chunk_size, **refs) == whole


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
def test_faiss_equals_the_exact_path(distance):
    """use_faiss=True gives the same metrics as the exact NumPy search: on continuous data (including queries whose
    first relevant reference lies beyond their R nearest, which faiss's lists do not reach and the exact scan
    completes), and for the Euclidean distances with exact ties on a grid, leave-one-out and query-vs-reference.
    (Cosine ties on a grid, such as parallel rows, are exact only in real arithmetic: faiss's 1 - x̂·ŷ in float32 and
    our ½‖x̂ - ŷ‖² round them differently, so which of two "tied" references comes first may differ.)"""
    pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; this runs where it is installed")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1500, 8)).astype(np.float32)
    labels = rng.integers(0, 15, 1500)
    r, first = _per_query_scores(x, labels, x, labels, True, distance, None, False)[:2]
    assert (first > r).any()  # the fallback is exercised
    cases = [(x, labels, {}), (x[:300], labels[:300], {"ref_embeddings": x[300:], "ref_labels": labels[300:]})]
    if distance != "cosine":
        grid, grid_labels = _dataset("grid", 0)
        cases.append((grid, grid_labels, {}))
        cases.append((grid[:80], grid_labels[:80], {"ref_embeddings": grid, "ref_labels": grid_labels}))
        cases[-1][2]["ref_includes_query"] = True
    for q, q_labels, refs in cases:
        exact = ml.retrieval_metrics(q, q_labels, k=(1, 4), distance=distance, chunk_size=200, **refs)
        fast = ml.retrieval_metrics(q, q_labels, k=(1, 4), distance=distance, chunk_size=200, use_faiss=True, **refs)
        assert fast == exact


# Issue 22's case at magnitudes where faiss's float32 squared distances under- or overflowed without rescaling, for
# each distance whose values the rows' dtype holds: the squared distances and dot products of 1e-25 rows are 1e-50,
# below float32's range, so neither search can rank them (the exact one ties them at 0).
MAGNITUDES = [(np.float32, 1e-25), (np.float32, 1e-30), (np.float64, 1e25), (np.float64, 1e100), (np.float64, 1e-100)]
MAGNITUDE_CASES = [
    pytest.param(dtype, scale, distance, id=f"{np.dtype(dtype).name}-{scale:g}-{distance}")
    for dtype, scale in MAGNITUDES
    for distance in ("euclidean", "sqeuclidean", "cosine", "dot")
    if distance in ("euclidean", "cosine") or np.finfo(dtype).tiny <= scale**2 <= np.finfo(dtype).max
]


@pytest.mark.parametrize(("dtype", "scale", "distance"), MAGNITUDE_CASES)
def test_faiss_equals_the_exact_search_at_any_magnitude(dtype, scale, distance):
    """retrieval_metrics and mine_dataset (which share the search) give with faiss the exact search's answers on
    issue 22's rows at 1e-25 and 1e-30 in float32 and 1e25, 1e100 and 1e-100 in float64: faiss gets the rows scaled
    by a power of two. Without it every distance tied (MAP@R 0.25 for 0.1667 at 1e-25 in float32). The answers are
    those of the same rows at scale 1 too."""
    pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; this runs where it is installed")
    x = np.random.default_rng(0).standard_normal((12, 3))
    labels = np.repeat(np.arange(4), 3)
    z = (x * scale).astype(dtype)
    exact = ml.retrieval_metrics(z, labels, k=(1, 2), distance=distance)
    assert exact == ml.retrieval_metrics(x, labels, k=(1, 2), distance=distance)
    assert ml.retrieval_metrics(z, labels, k=(1, 2), distance=distance, use_faiss=True) == exact
    for negative in ("hardest", "semihard"):
        expected = ml.mine_dataset(z, labels, negative=negative, distance=distance)
        got = ml.mine_dataset(z, labels, negative=negative, distance=distance, use_faiss=True, n_neighbours=4)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[0], expected[0])


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "dot"])
def test_faiss_refuses_rows_whose_magnitudes_float32_cannot_hold_together(distance):
    """Rows 2^70 apart in magnitude (float64): after any one rescaling the small rows' squared distances fall below
    float32's range, so faiss would tie them; the search refuses, naming the argument holding them and the exact
    search. 2^40 apart is served. Cosine searches unit rows: any magnitudes."""
    pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; this runs where it is installed")
    x = np.random.default_rng(1).standard_normal((40, 3))
    labels = np.repeat(np.arange(8), 5)
    spread = x.copy()
    spread[::2] *= 2.0**-70
    refusal = r"^embeddings has rows of largest \|entry\| .* use_faiss=False for the exact search$"
    with pytest.raises(ValueError, match=refusal):
        ml.retrieval_metrics(spread, labels, distance=distance, use_faiss=True)
    with pytest.raises(ValueError, match=refusal):
        ml.mine_dataset(spread, labels, distance=distance, use_faiss=True)
    with pytest.raises(ValueError, match=r"^ref_embeddings has rows"):
        ml.retrieval_metrics(x, labels, ref_embeddings=spread, ref_labels=labels, distance=distance, use_faiss=True)
    served = x.copy()
    served[::2] *= 2.0**-40
    assert ml.mine_dataset(served, labels, distance=distance, use_faiss=True)[0].shape == (40,)
    assert ml.retrieval_metrics(spread, labels, distance="cosine", use_faiss=True) == ml.retrieval_metrics(
        spread, labels, distance="cosine"
    )


def test_recall_at_k_takes_one_k_and_points_to_retrieval_metrics_for_several():
    """recall_at_k returns one float, so a tuple of k is refused with a message that names the call giving several:
    retrieval_metrics(..., k=(1, 5)), whose Recall@K are recall_at_k's for each k."""
    x = np.random.default_rng(3).standard_normal((20, 4))
    labels = np.arange(20) % 4
    pointer = r"^k must be an integer: .*got tuple \(1, 5\): retrieval_metrics\(.*k=\(1, 5\)\)"
    with pytest.raises(TypeError, match=pointer):
        ml.recall_at_k(x, labels, k=(1, 5))
    several = ml.retrieval_metrics(x, labels, k=(1, 5))
    assert [several["recall_at_1"], several["recall_at_5"]] == [ml.recall_at_k(x, labels, k=k) for k in (1, 5)]


def test_peak_memory_is_one_chunk_not_the_whole_matrix():
    """4000 queries against themselves: the whole distance matrix would take 128 MB (float64); with chunks of 50
    queries the peak of NumPy's allocations stays under 12 MB (measured: 3.9 MB; one chunk's distances
    take 1.6 MB, and the search keeps a few temporaries of that size)."""
    x = np.random.default_rng(0).standard_normal((4000, 8))
    labels = np.arange(4000) % 40
    expected = ml.retrieval_metrics(x[:200], labels[:200])  # warm up the kernels outside the measurement
    assert 0 <= expected["precision_at_1"] <= 1
    tracemalloc.start()
    try:
        ml.retrieval_metrics(x, labels, chunk_size=50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12e6, peak


def test_recall_at_k_keeps_its_signature_and_agrees_with_the_dict():
    x, labels = _dataset("continuous", 1)
    for k in (1, 2, 9):
        assert ml.recall_at_k(x, labels, k=k) == ml.retrieval_metrics(x, labels, k=k)[f"recall_at_{k}"]
    assert ml.recall_at_k(x, labels, k=1) == ml.precision_at_1(x, labels)
    with pytest.raises(ValueError, match=r"^k must be at most the number of references .*, 239; got 240$"):
        ml.recall_at_k(x, labels, k=240)


def test_float32_and_float64_embeddings_give_the_same_ranking_here():
    x, labels = _dataset("grid", 2)
    assert ml.retrieval_metrics(x, labels) == ml.retrieval_metrics(x.astype(np.float64), labels)


def test_bad_input_is_refused_naming_the_argument():
    x, labels = np.random.default_rng(0).standard_normal((6, 2)), np.array([0, 0, 1, 1, 2, 2])
    cases = [
        (TypeError, r"^embeddings must be a float32 or float64 array", (x.astype(int), labels), {}),
        (ValueError, r"^labels must have shape \(6,\) to match embeddings", (x, labels[:5]), {}),
        (ValueError, r"^distance must be one of", (x, labels), {"distance": "manhattan"}),
        (ValueError, r"^average must be one of 'queries', 'classes'; got 'macro'", (x, labels), {"average": "macro"}),
        (ValueError, r"^k must be >= 1; got 0", (x, labels), {"k": 0}),
        (ValueError, r"^k must be a positive integer or a non-empty sequence", (x, labels), {"k": ()}),
        (TypeError, r"^k must be an integer; got float", (x, labels), {"k": (1, 2.5)}),
        (ValueError, r"^chunk_size must be >= 1; got 0", (x, labels), {"chunk_size": 0}),
        (TypeError, r"^use_faiss must be True or False", (x, labels), {"use_faiss": 1}),
        (TypeError, r"^ref_includes_query must be True or False", (x, labels), {"ref_includes_query": "yes"}),
        (ValueError, r"^ref_labels must be given with ref_embeddings", (x, labels), {"ref_embeddings": x}),
        (
            ValueError,
            r"^ref_embeddings must have 2 features to match embeddings",
            (x, labels),
            {"ref_embeddings": x[:, :1], "ref_labels": labels},
        ),
        (
            ValueError,
            r"^ref_embeddings and ref_labels must start with the 6 queries",
            (x, labels),
            {"ref_embeddings": x[::-1], "ref_labels": labels, "ref_includes_query": True},
        ),
        (ValueError, r"^labels must give some query a relevant reference", (x, np.arange(6)), {}),
        (TypeError, r"takes no metric=; the distance is distance= here", (x, labels), {"metric": "cosine"}),
    ]
    for error, message, args, kwargs in cases:
        with pytest.raises(error, match=message):
            ml.retrieval_metrics(*args, **kwargs)
    for function in FUNCTIONS.values():
        with pytest.raises(ValueError, match=r"^average must be one of"):
            function(x, labels, average="micro")


@pytest.mark.parametrize("use_faiss", [False, True])
def test_hand_checked_identical_rows_skip_the_query_itself_not_a_copy(use_faiss):
    """Five identical rows, classes 1, 0, 1, 0, 0: every distance is 0, so each query ranks the others by index.

    - q0 (class 1, R=1): 1 (0), 2 (1), ...: P@1 0, R-prec 0, AP@R 0, first relevant at rank 2;
    - q1 (class 0, R=2): 0 (1), 2 (1), 3 (0): R-prec 0, AP@R 0, first at 3;
    - q2 (class 1, R=1): 0 (1): all 1;
    - q3 and q4 (class 0, R=2): 0 (1), 1 (0), ...: P@1 0, R-prec 1/2, AP@R (1/2)/2 = 1/4, first at 2.

    Means: P@1 1/5, R-prec 2/5, MAP@R 3/10, MRR (1/2 + 1/3 + 1 + 1/2 + 1/2)/5 = 17/30. For q3 and q4, faiss's
    k + 1 = 3 nearest are rows 0, 1, 2 and miss the query itself: the last is dropped (as PML does), not the first,
    which would give them AP@R 1/2."""
    if use_faiss:
        pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; this runs where it is installed")
    got = ml.retrieval_metrics(np.ones((5, 2), dtype=np.float32), np.array([1, 0, 1, 0, 0]), use_faiss=use_faiss)
    expected = {"precision_at_1": 1 / 5, "r_precision": 2 / 5, "mean_average_precision_at_r": 3 / 10}
    expected["mean_reciprocal_rank"] = 17 / 30
    np.testing.assert_allclose([got[name] for name in expected], list(expected.values()), rtol=1e-15)


def test_labels_of_any_integer_dtype_are_compared_exactly():
    """Labels are identities: uint64 labels beyond 2⁶³ against negative int64 ones give the metrics of the same
    classes numbered 0, 1, 2, and match none of -2, -1, 0 (no wrap-around, no rounding through floats)."""
    x, small = _dataset("continuous", 3)
    small = small % 3
    huge = np.array([2**64 - 1, 2**64 - 2, 2**63], dtype=np.uint64)[small]
    refs = {"ref_embeddings": x[::-1].copy()}
    with pytest.raises(ValueError, match="relevant reference"):  # no class of huge is among these references
        ml.retrieval_metrics(x, huge, ref_labels=small[::-1].astype(np.int64) - 2, **refs)
    got = ml.retrieval_metrics(x, huge, ref_labels=huge[::-1].copy(), **refs)
    assert got == ml.retrieval_metrics(x, small, ref_labels=small[::-1].copy(), **refs)
    assert ml.retrieval_metrics(x, huge) == ml.retrieval_metrics(x, small)
