"""The row-block engine: a batch whose matrix does not fit the working memory runs in blocks of anchor rows, with
the one-block result (tests/test_contract.py checks it on every registered configuration with blocks of 3 rows;
here at B = 2048 in 7 uneven blocks, as the configuration sets them)."""

import tracemalloc

import numpy as np
import pytest

import metricloss as ml
from metricloss import _batch
from metricloss._kernels import numba as numba_kernels
from metricloss.testing import assert_close

B, FEATURES = 2048, 16
ROWS_PER_BLOCK = 293  # 2048 = 6·293 + 290: seven blocks, the last one shorter


def _working_memory_for(rows, n_cols, itemsize=8):
    """The working memory (MiB) that gives blocks of ``rows`` anchor rows against ``n_cols`` candidates."""
    return (rows + 0.5) * n_cols * itemsize / 2**20


def _in_seven_blocks(loss, *args, n_candidates=B, rows=ROWS_PER_BLOCK, one_matrix=True, **kwargs):
    """``loss(*args, **kwargs)`` with the working memory of ``rows``-row blocks against ``n_candidates``
    candidates (``one_matrix``: the loss's matrices per block set aside, one), and the rows of each block it ran
    (every pass over the blocks)."""
    blocks = []
    original = _batch.LabelledBatch.blocks
    rows_for_one_matrix = _batch.block_rows

    def recorded(self):
        for block in original(self):
            blocks.append(block.x.shape[0])
            yield block

    with (
        pytest.MonkeyPatch.context() as patch,
        ml.config_context(working_memory=_working_memory_for(rows, n_candidates)),
    ):
        patch.setattr(_batch.LabelledBatch, "blocks", recorded)
        if one_matrix:
            patch.setattr(
                _batch,
                "block_rows",
                lambda n_rows, n_cols, itemsize, matrices: rows_for_one_matrix(n_rows, n_cols, itemsize),
            )
        return loss(*args, **kwargs), blocks


def _assert_seven_blocks_equal_one_block(loss, batch, hyper, references, passes=1):
    """``loss`` on the batch (or the batch against its reversed self as references) in seven uneven blocks, read in
    ``passes`` passes, equals its one-block result: value and gradients, float64, to a relative 1e-12."""
    x, labels = batch
    extra = {"ref_embeddings": x[::-1].copy(), "ref_labels": labels[::-1].copy()} if references else {}
    whole_value, whole_grad = loss(x, labels, **hyper, **extra)
    (value, grad), blocks = _in_seven_blocks(loss, x, labels, **hyper, **extra)
    assert blocks == ([293] * 6 + [290]) * passes
    assert value == pytest.approx(whole_value, rel=1e-12)
    for got, expected in zip(grad if references else (grad,), whole_grad if references else (whole_grad,), strict=True):
        assert_close(got, expected, rtol=1e-12)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return 0.3 * rng.standard_normal((B, FEATURES)), rng.integers(0, B // 4, size=B)


def test_the_working_memory_sets_the_rows_per_block():
    with ml.config_context(working_memory=_working_memory_for(ROWS_PER_BLOCK, B)):
        assert _batch.block_rows(B, B, 8) == ROWS_PER_BLOCK
        assert _batch.block_rows(B, B, 8, matrices=3) == ROWS_PER_BLOCK // 3  # a loss holding 3 matrices at once
    assert _batch.block_rows(B, B, 8) == B  # the default budget holds the whole 2048 × 2048 matrix
    assert ml.get_config()["working_memory"] == 1024.0


@pytest.mark.parametrize(
    ("loss", "matrices"),
    [(ml.triplet_loss, 1), (ml.ntxent_loss, 2), (ml.multi_similarity_loss, 3), (ml.circle_loss, 5)],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_a_loss_shares_the_working_memory_among_the_matrices_it_holds(batch, loss, matrices):
    """Each loss declares how many arrays of its block matrix's size it holds at once (its peak as one block, in
    matrices: benchmarks/blocks_memory.py), and its blocks are that many times smaller."""
    x, labels = batch
    _, blocks = _in_seven_blocks(loss, x, labels, rows=3 * ROWS_PER_BLOCK, one_matrix=False)
    assert blocks[0] == 3 * ROWS_PER_BLOCK // matrices


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "1024", True])
def test_a_bad_working_memory_is_refused_by_name(value):
    with pytest.raises(ValueError, match="working_memory must be a finite number of MiB > 0"):
        ml.set_config(working_memory=value)


# --- memory: one block's matrix at a time ------------------------------------------------------------------------

MEMORY_B, MEMORY_FEATURES, MEMORY_ROWS = 4096, 128, 1024  # float32: four blocks of 1024 rows, each matrix 16 MiB
MEMORY_LOSSES = [
    (ml.triplet_loss, {"mining": "hard"}),
    (ml.triplet_loss, {"mining": "all"}),
    (ml.ntxent_loss, {}),
    (ml.margin_loss, {}),
    (ml.multi_similarity_loss, {}),
    (ml.circle_loss, {}),
    (ml.lifted_structure_loss, {}),
]


def _traced_peak(call):
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("loss", "hyper"), MEMORY_LOSSES, ids=lambda v: getattr(v, "__name__", None) or "-".join(v.values())
)
def test_a_loss_in_blocks_holds_one_blocks_matrix_at_a_time(loss, hyper):
    """At B = 4096 (float32, F = 128) in blocks of 1024 rows, a loss's traced peak is at most its peak as one block
    scaled to a block's rows, plus half a block's matrix: the pullback's arrays of the candidates' size (the
    candidates with a column of ones, their product with the block's cotangent, their gradients: 3 R×(F + 1)
    arrays, 3/8 of a 1024×4096 matrix here). Each block's matrix is computed in the one before it, and no
    block-sized array of a loss outlives its block; a loop that held the last block's matrix (or its cotangent)
    while the next was computed would hold one block's matrix more."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((MEMORY_B, MEMORY_FEATURES)).astype(np.float32)
    labels = np.arange(MEMORY_B) // 4
    loss(x, labels, **hyper)  # compiles the kernels first: only the loss is traced
    one_block = _traced_peak(lambda: loss(x, labels, **hyper))
    with ml.config_context(working_memory=_working_memory_for(MEMORY_ROWS, MEMORY_B, itemsize=4)):
        assert _batch.block_rows(MEMORY_B, MEMORY_B, 4) == MEMORY_ROWS
        in_blocks = _traced_peak(lambda: loss(x, labels, **hyper))
    block_matrix = MEMORY_ROWS * MEMORY_B * x.itemsize
    assert in_blocks <= one_block * MEMORY_ROWS / MEMORY_B + block_matrix / 2


TRIPLET_CONFIGURATIONS = [
    {"mining": "all"},
    {"mining": "all", "distance": "sqeuclidean", "margin": 0.5},
    {"mining": "all", "soft": True, "distance": "cosine"},
    {"mining": "all_semihard", "distance": "snr"},
    {"mining": "hard"},
    {"mining": "hard", "incomplete_anchors": "keep", "distance": "dot"},
    {"mining": "semihard"},
    {"mining": "semihard", "soft": True},
]


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize("hyper", TRIPLET_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())))
def test_triplet_loss_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    _assert_seven_blocks_equal_one_block(ml.triplet_loss, batch, hyper, references)


def test_given_triplets_in_blocks_equal_one_block(batch):
    x, labels = batch
    triplets = ml.batch_triplets(x, labels)
    whole_value, whole_grad = ml.triplet_loss(x, labels, triplets=triplets)
    (value, grad), blocks = _in_seven_blocks(ml.triplet_loss, x, labels, triplets=triplets)
    assert blocks == [293] * 6 + [290]
    assert value == pytest.approx(whole_value, rel=1e-12)
    assert_close(grad, whole_grad, rtol=1e-12)


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize(
    "hyper",
    [{}, {"incomplete_anchors": "keep", "distance": "cosine"}, {"distance": "sqeuclidean", "reduction": "sum"}],
    ids=["drop", "keep-cosine", "sqeuclidean-sum"],
)
def test_generalized_lifted_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    _assert_seven_blocks_equal_one_block(ml.generalized_lifted_structure_loss, batch, hyper, references)


CONTRASTIVE_CONFIGURATIONS = [
    {},
    {"form": "linear", "pos_margin": 0.2, "reduction": "mean_nonzero", "split_reduction": True},
    {"form": "squared", "distance": "cosine", "margin": 0.5, "reduction": "sum", "split_reduction": True},
    {"distance": "snr", "pos_margin": 0.5, "split_reduction": True},
    {"form": "linear", "distance": "dot", "pos_margin": -0.3, "margin": -0.1, "split_reduction": True},
    {"distance": "sqeuclidean", "reduction": "mean_nonzero"},
]


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize("hyper", CONTRASTIVE_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())) or "hadsell")
def test_contrastive_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    _assert_seven_blocks_equal_one_block(ml.contrastive_loss, batch, hyper, references)


NTXENT_CONFIGURATIONS = [
    {},
    {"temperature": 0.5, "similarity": "dot", "reduction": "mean_nonzero"},
    {"temperature": 0.2, "reduction": "sum"},
]


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize("hyper", NTXENT_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())) or "pml")
def test_ntxent_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    _assert_seven_blocks_equal_one_block(ml.ntxent_loss, batch, hyper, references)


SUPCON_CONFIGURATIONS = [
    {},
    {"temperature": 0.07, "reduction": "mean_nonzero"},
    {"temperature": 0.5, "similarity": "dot", "reduction": "sum"},
]


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize("hyper", SUPCON_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())) or "pml")
def test_supcon_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    _assert_seven_blocks_equal_one_block(ml.supcon_loss, batch, hyper, references)


RANKING_CONFIGURATIONS = [
    {},
    {"symmetric": True},
    {"scale": 1.0, "similarity": "dot", "reduction": "sum", "symmetric": True},
    {"scale": 50.0, "symmetric": True, "reduction": "mean_nonzero"},
]


@pytest.mark.parametrize("n_hard", [0, 300], ids=["pairs", "hard-negatives"])
@pytest.mark.parametrize("hyper", RANKING_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())) or "st")
def test_multiple_negatives_ranking_in_seven_uneven_blocks_equals_one_block(batch, hyper, n_hard):
    """Blocks of anchor rows; the symmetric loss's columns in two passes (their log-sum-exps exchanged)."""
    x, _ = batch
    rng = np.random.default_rng(1)
    positives = x + 0.2 * rng.standard_normal(x.shape)
    negatives = [0.3 * rng.standard_normal((n_hard, FEATURES))] if n_hard else []
    whole_value, whole_grads = ml.multiple_negatives_ranking_loss(x, positives, *negatives, **hyper)
    (value, grads), blocks = _in_seven_blocks(
        ml.multiple_negatives_ranking_loss, x, positives, *negatives, n_candidates=B + n_hard, **hyper
    )
    passes = 2 if hyper.get("symmetric") else 1
    assert blocks == ([293] * 6 + [290]) * passes
    assert value == pytest.approx(whole_value, rel=1e-12)
    for got, expected in zip(grads, whole_grads, strict=True):
        assert_close(got, expected, rtol=1e-12)


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize(
    "hyper",
    [
        {},
        {"distance": "cosine", "margin": 0.5, "reduction": "mean_nonzero"},
        {"distance": "sqeuclidean", "reduction": "sum"},
    ],
    ids=["euclidean-mean", "cosine-mean_nonzero", "sqeuclidean-sum"],
)
def test_lifted_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    """The lifted loss reads the seven blocks in passes: every row's (and column's) negative log-sum-exp; with
    references every reference's coefficient; then the terms and the cotangent."""
    passes = 3 if references else 2
    _assert_seven_blocks_equal_one_block(ml.lifted_structure_loss, batch, hyper, references, passes)


MULTI_SIMILARITY_CONFIGURATIONS = [
    {},
    {"mining": "epsilon", "reduction": "mean_nonzero"},
    {"mining": "epsilon", "epsilon": 0.3, "similarity": "dot", "reduction": "sum"},
]


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize(
    "hyper", MULTI_SIMILARITY_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())) or "default"
)
def test_multi_similarity_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    _assert_seven_blocks_equal_one_block(ml.multi_similarity_loss, batch, hyper, references)


CIRCLE_CONFIGURATIONS = [{}, {"margin": 0.25, "scale": 256.0, "detach_weights": False, "reduction": "mean"}]


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize("hyper", CIRCLE_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())) or "paper")
def test_circle_in_seven_uneven_blocks_equals_one_block(batch, hyper, references):
    _assert_seven_blocks_equal_one_block(ml.circle_loss, batch, hyper, references)


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize(
    "hyper", [{}, {"margin": 0.1, "scale": 32.0, "detach_weights": False}], ids=["defaults", "0.1-32-full-gradient"]
)
def test_circle_over_all_pairs_in_two_passes_of_seven_blocks_equals_one_block(batch, hyper, references):
    """One term over every pair of the batch: a pass for the batch's two log-sum-exps, a pass for the cotangent."""
    hyper = {"form": "all_pairs", **hyper}
    _assert_seven_blocks_equal_one_block(ml.circle_loss, batch, hyper, references, passes=2)


def _assert_seven_blocks_against(n_candidates, loss, *arrays, **hyper):
    """``loss(*arrays, **hyper)`` in seven uneven blocks against ``n_candidates`` columns (class centres, say,
    rather than the batch) equals its one-block result, as :func:`_assert_seven_blocks_equal_one_block` checks it."""
    whole_value, whole_grad = loss(*arrays, **hyper)
    (value, grad), blocks = _in_seven_blocks(loss, *arrays, n_candidates=n_candidates, **hyper)
    assert blocks == [293] * 6 + [290]
    assert value == pytest.approx(whole_value, rel=1e-12)
    for got, expected in zip(*((g if isinstance(g, tuple) else (g,)) for g in (grad, whole_grad)), strict=True):
        assert_close(got, expected, rtol=1e-12)


TRIPLET_CENTER_CONFIGURATIONS = [
    {},
    {"distance": "euclidean", "halved": False, "margin": 0.5, "reduction": "mean"},
    {"distance": "cosine", "margin": 0.1, "reduction": "mean_nonzero"},
]


@pytest.mark.parametrize("centers", [False, True], ids=["batch-centres", "learnable-centres"])
@pytest.mark.parametrize(
    "hyper", TRIPLET_CENTER_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())) or "paper"
)
def test_triplet_center_in_seven_uneven_blocks_equals_one_block(batch, hyper, centers):
    x, labels = batch
    margin = {"margin": 0.02} if not hyper else {}  # the paper's margin of 5 on this batch's scale
    if centers:  # blocks of embeddings against every centre: C = 600 centres, some of no class in the batch
        centres = ml.init_centers(x, labels, n_classes=600) + 0.01
        _assert_seven_blocks_against(600, ml.triplet_center_loss, x, labels, centers=centres, **margin, **hyper)
    else:  # blocks of embeddings against every class mean of the batch
        _assert_seven_blocks_against(np.unique(labels).size, ml.triplet_center_loss, x, labels, **margin, **hyper)


MARGIN_CONFIGURATIONS = [
    {},
    {"distance": "sqeuclidean", "reduction": "sum", "margin": 0.3, "beta": 0.8},
    {"distance": "cosine", "reduction": "mean", "margin": 0.1, "beta": 0.5},
    {"beta": np.array([1.1]), "nu": 0.1},  # one learnable β, shared
    {"beta": "per class", "nu": 0.2, "reduction": "mean"},  # one learnable β per class
]


@pytest.mark.parametrize("triplets", [False, True], ids=["all-triplets", "given-triplets"])
@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize(
    "hyper", MARGIN_CONFIGURATIONS, ids=["paper", "sqeuclidean-sum", "cosine", "beta", "class-beta"]
)
def test_margin_in_seven_uneven_blocks_equals_one_block(batch, hyper, references, triplets):
    x, labels = batch
    hyper = dict(hyper)
    if isinstance(hyper.get("beta"), str):
        hyper["beta"] = 1.2 + 0.1 * np.random.default_rng(1).standard_normal(labels.max() + 1)
    if references:
        hyper.update(ref_embeddings=x[::-1].copy(), ref_labels=labels[::-1].copy())
    if triplets:  # the given triplets index the references where there are some
        extra = {k: hyper[k] for k in ("ref_embeddings", "ref_labels") if k in hyper}
        rng = np.random.default_rng(2)
        a, p, n = ml.mine_triplets(x, labels, max_per_anchor=3, rng=rng, **extra)
        order = rng.permutation(a.size)  # not sorted by anchor: the blocks take theirs out of order
        hyper["triplets"] = (a[order], p[order], n[order])
    _assert_seven_blocks_against(B, ml.margin_loss, x, labels, **hyper)


@pytest.mark.parametrize("form", ["sohn", "classes", "label-sets", "labelled-batch"])
def test_npair_in_seven_uneven_blocks_equals_one_block(form):
    rng = np.random.default_rng(3)
    x = 0.3 * rng.standard_normal((B, FEATURES))
    positives = x + 0.1 * rng.standard_normal((B, FEATURES))
    hyper = {"l2_reg": 0.01, "reduction": "mean_nonzero"}
    if form == "labelled-batch":  # B/2 classes of two: 1024 pairs, in seven blocks of 147 anchors (the last 142)
        labels = rng.permutation(np.arange(B) // 2)
        whole_value, whole_grad = ml.npair_loss(x, labels, **hyper)
        (value, grad), blocks = _in_seven_blocks(ml.npair_loss, x, labels, n_candidates=B // 2, rows=147, **hyper)
        assert blocks == [147] * 6 + [142]
        assert value == pytest.approx(whole_value, rel=1e-12)
        assert_close(grad, whole_grad, rtol=1e-12)
        return
    labels = {
        "sohn": None,
        "classes": rng.integers(0, 300, size=B),
        "label-sets": (rng.random((B, 40)) < 0.1).astype(int),
    }[form]
    _assert_seven_blocks_against(B, lambda a, p, **h: ml.npair_pairs_loss(a, p, labels, **h), x, positives, **hyper)


# The online miners in blocks: the same indices in the same order, the same random draws, as one block.

MINER_CONFIGURATIONS = [
    ("triplet_counts", {}),
    ("triplet_counts", {"margin": 0.2, "distance": "cosine"}),
    ("mine_triplets", {"kind": "semihard", "margin": 0.05}),
    ("mine_triplets", {"kind": "all", "max_per_anchor": 7, "rng": 0}),  # a draw per anchor whose triplets exceed 7
    ("mine_triplets", {"kind": "hard", "max_per_anchor": 3, "rng": 1, "distance": "snr"}),
    ("mine_pairs", {}),
    ("mine_pairs", {"pos_margin": 0.8, "margin": 1.2, "distance": "sqeuclidean"}),
    ("batch_triplets", {}),
    ("batch_triplets", {"positive": "easiest", "negative": "semihard", "negative_range": (0.5, 2.0)}),
    ("batch_triplets", {"positive": "semihard", "negative": "easiest", "positive_range": (0.0, 1.5)}),
    ("distance_weighted_negatives", {"rng": 0}),
    ("distance_weighted_negatives", {"rng": 2, "cutoff": 0.3, "nonzero_loss_cutoff": 1.2}),
]


@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
@pytest.mark.parametrize(
    ("miner", "hyper"),
    MINER_CONFIGURATIONS,
    ids=[f"{m}-{'-'.join(map(str, h.values()))}" for m, h in MINER_CONFIGURATIONS],
)
def test_miner_in_seven_uneven_blocks_equals_one_block(batch, miner, hyper, references):
    """The miner's index arrays (or counts) in seven uneven blocks are exactly its one-block result: the same
    indices in the same order, the same random draws (the anchors draw in order, whatever the blocks)."""
    x, labels = batch
    if miner == "distance_weighted_negatives":  # points on the unit sphere, as the sampling assumes
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    extra = {"ref_embeddings": x[::-1].copy(), "ref_labels": labels[::-1].copy()} if references else {}
    mine = getattr(ml.mining, miner)
    whole = mine(x, labels, **hyper, **extra)
    in_blocks, blocks = _in_seven_blocks(mine, x, labels, **hyper, **extra)
    assert blocks == [293] * 6 + [290]
    if isinstance(whole, dict):
        assert in_blocks == whole and whole["valid"] > 0
        return
    assert len(in_blocks) == len(whole) and whole[0].size > 0
    for got, expected in zip(in_blocks, whole, strict=True):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("miner", "hyper"),
    [
        ("triplet_counts", {}),
        ("mine_triplets", {"max_per_anchor": 3, "rng": 0}),
        ("mine_pairs", {}),
        ("batch_triplets", {}),
        ("distance_weighted_negatives", {"rng": 0}),
    ],
)
def test_miner_in_blocks_never_holds_the_whole_matrix(batch, miner, hyper):
    """In blocks of 32 rows, a miner's peak traced memory is under a quarter of one B×B float64 matrix (32 MiB),
    its output included (a few MiB at most here): O(block · R), not O(B · R)."""
    x, labels = batch
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mine = getattr(ml.mining, miner)
    mine(x, labels, **hyper)  # compiles the kernels first: only the mining is traced
    with ml.config_context(working_memory=_working_memory_for(32, B)):
        tracemalloc.start()
        try:
            mine(x, labels, **hyper)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < B * B * x.itemsize / 4


# --- WARP's embedding form: blocks of query rows against every item ------------------------------------------------

N_ITEMS = 600
WARP_CONFIGURATIONS = [
    {"rng": 5},
    {"rng": 6, "weighting": "log", "max_trials": 5, "reduction": "mean_nonzero", "margin": 0.5},
    {"sampling": "index", "reduction": "mean"},
    {"sampling": "exact"},
    {"sampling": "exact", "weighting": "log", "margin": 2.0, "reduction": "mean_nonzero"},
]


def _warp_problem(density):
    """B queries against 600 items, each item a positive of a query with probability ``density``."""
    rng = np.random.default_rng(7)
    queries = 0.5 * rng.standard_normal((B, FEATURES))
    items = 0.5 * rng.standard_normal((N_ITEMS, FEATURES))
    return queries, items, rng.random((B, N_ITEMS)) < density


# Density 0.02: about 24 entries of the cotangent per query, pulled back pair by pair; 0.3: about 360 per query,
# more than N_ITEMS / FEATURES, so that each block (and the one block) pulls them back through the dense GEMMs.
@pytest.mark.parametrize("density", [0.02, 0.3], ids=["few-pairs", "many-pairs"])
@pytest.mark.parametrize("hyper", WARP_CONFIGURATIONS, ids=lambda h: "-".join(map(str, h.values())))
def test_warp_embedding_in_seven_uneven_blocks_equals_one_block(hyper, density):
    """Each (query, positive) pair draws from its own seed, drawn for every pair at once: a block of queries draws
    exactly what the one block draws for them, so the values and gradients agree."""
    _assert_seven_blocks_against(N_ITEMS, ml.warp_embedding_loss, *_warp_problem(density), **hyper)


@pytest.mark.parametrize("sampling", ["random", "exact"])
def test_only_warps_exact_form_computes_the_blocks_score_matrices(sampling):
    """The sampled form computes the scores of the items it draws only: its blocks hold no score matrix."""
    matrices = []
    original = _batch.LabelledBatch.blocks

    def recorded(self):
        for block in original(self):
            matrices.append(block.s)
            yield block

    with (
        pytest.MonkeyPatch.context() as patch,
        ml.config_context(working_memory=_working_memory_for(ROWS_PER_BLOCK, N_ITEMS)),
    ):
        patch.setattr(_batch.LabelledBatch, "blocks", recorded)
        ml.warp_embedding_loss(*_warp_problem(0.02), sampling=sampling, rng=0)
    assert len(matrices) == 7
    if sampling == "exact":
        assert [s.shape for s in matrices] == [(293, N_ITEMS)] * 6 + [(290, N_ITEMS)]
    else:
        assert all(s is None for s in matrices)


# --- the engine picks batch-all's kernel ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance", "references", "rows", "kernel"),
    [
        ("euclidean", False, None, "batch_all_symmetric"),  # one block within one batch: D = Dᵀ, written folded
        ("euclidean", True, None, "batch_all_triplets"),
        ("snr", False, None, "batch_all_triplets"),  # not symmetric
        ("euclidean", False, ROWS_PER_BLOCK, "batch_all_triplets"),  # a block of rows: not square
    ],
    ids=["within", "references", "snr", "blocks"],
)
def test_the_engine_picks_batch_alls_kernel_by_the_batch(batch, distance, references, rows, kernel):
    """LabelledBatch.batch_all runs the folded kernel only on a whole batch on a symmetric distance, and says so in
    the pull options it returns; the loss is the same either way (the other tests)."""
    x, labels = batch
    x, labels = x[:600], labels[:600]
    extra = {"ref_embeddings": x[::-1].copy(), "ref_labels": labels[::-1].copy()} if references else {}
    called, written = [], []
    original = _batch.LabelledBatch.batch_all

    def recorded(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        written.append(result[3])
        return result

    with pytest.MonkeyPatch.context() as patch:
        for name in ("batch_all_symmetric", "batch_all_triplets"):
            function = getattr(numba_kernels, name)
            patch.setattr(numba_kernels, name, lambda *a, _f=function, _n=name, **k: called.append(_n) or _f(*a, **k))
        patch.setattr(_batch.LabelledBatch, "batch_all", recorded)
        with ml.config_context(working_memory=_working_memory_for(rows, 600) if rows else 1024):
            ml.triplet_loss(x, labels, distance=distance, **extra)
    assert set(called) == {kernel}
    assert all(options["symmetric"] == (kernel == "batch_all_symmetric") for options in written)
    assert all(options["divided"] == (distance == "euclidean") for options in written)
