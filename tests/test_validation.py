"""Error messages name the argument, say what was expected and what was got (the contract covers every loss;
these pin the exact wording users see, and the inputs that must be accepted)."""

import numpy as np
import pytest

import metricloss as ml


def test_labels_of_the_wrong_shape_say_both_shapes_and_the_fix():
    x = np.zeros((32, 4))
    with pytest.raises(
        ValueError,
        match=r"^labels must have shape \(32,\) to match embeddings; got \(32, 1\): "
        r"flatten it with labels.ravel\(\)$",
    ):
        ml.contrastive_loss(x, np.zeros((32, 1), dtype=int))


def test_non_finite_input_says_where():
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"embeddings must be finite; got nan at index \(2, 1\) \(1 non-finite"):
        ml.contrastive_loss(x, np.arange(4))


def test_integer_embeddings_say_how_to_convert():
    with pytest.raises(
        TypeError,
        match=r"embeddings must be a float32 or float64 array; got dtype int64: .*"
        r"astype\(np.float64\)",
    ):
        ml.contrastive_loss(np.zeros((4, 3), dtype=np.int64), np.arange(4))


def test_non_numeric_objects_are_type_errors():
    with pytest.raises(TypeError, match="embeddings must be a float32 or float64 array; got dtype object"):
        ml.contrastive_loss([[object()]], [0])
    with pytest.raises(TypeError, match="margin must be a real number; got str"):
        ml.contrastive_loss(np.zeros((2, 2)), [0, 1], margin="1")
    with pytest.raises(ValueError, match="margin must be finite; got nan"):
        ml.contrastive_loss(np.zeros((2, 2)), [0, 1], margin=float("nan"))


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match=r"embeddings must not be empty; got an array of shape \(0, 3\)"):
        ml.contrastive_loss(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_lists_and_python_numbers_are_accepted():
    _, grad = ml.contrastive_loss([[0.0, 0.0], [0.0, 0.5], [0.6, 0.0]], [0, 0, 1])
    assert isinstance(grad, np.ndarray) and grad.dtype == np.float64
    value_pairs, _ = ml.margin_ranking_loss([1.0, 2.0], [2.0, 1.0], [1, -1], margin=1)
    assert value_pairs == 2.0  # [−(1 − 2) + 1]₊ = 2 and [(2 − 1) + 1]₊ = 2


def test_margin_zero_is_legitimate():
    value, _ = ml.triplet_margin_loss(np.zeros((1, 2)), np.ones((1, 2)), np.ones((1, 2)), margin=0)
    assert value == 0.0


def test_boolean_targets_are_accepted_for_zero_one_targets():
    x = np.array([[0.0, 0.0]])
    assert ml.contrastive_pair_loss(x, x + 1, np.array([True]))[0] == pytest.approx(1.0, rel=1e-15)  # ½·(√2)²


# --- issue 9, finding 5: arguments that slipped through --------------------------------------------------------


def _samplers(rng):
    """Every mining function that draws at random, called with ``rng``: pk_batches eagerly (its checks come at the
    call, not at the first next())."""
    x, labels = np.random.default_rng(0).standard_normal((6, 2)), np.array([0, 0, 1, 1, 2, 2])
    return {
        "mine_triplets": lambda: ml.mine_triplets(x, labels, max_per_anchor=1, rng=rng),
        "pk_batches": lambda: ml.pk_batches(labels, p=2, k=2, rng=rng),
        "random_negatives": lambda: ml.random_negatives(labels, labels, n=2, rng=rng),
        "rank_window_negatives": lambda: ml.rank_window_negatives(x, x, n=2, lo=1, hi=3, rng=rng),
    }


@pytest.mark.parametrize(
    ("rng", "error", "message"),
    [
        ("seed", TypeError, r"^rng must be a numpy.random.Generator, an int seed or None; got str$"),
        (1.5, TypeError, r"^rng must be a numpy.random.Generator, an int seed or None; got float$"),
        (True, TypeError, r"^rng must be a numpy.random.Generator, an int seed or None; got bool$"),
        (-1, ValueError, r"^rng must be a seed >= 0; got -1$"),
    ],
)
@pytest.mark.parametrize("sampler", ["mine_triplets", "pk_batches", "random_negatives", "rank_window_negatives"])
def test_a_bad_rng_is_refused_naming_rng(sampler, rng, error, message):
    with pytest.raises(error, match=message):
        _samplers(rng)[sampler]()


@pytest.mark.parametrize("sampler", ["mine_triplets", "pk_batches", "random_negatives", "rank_window_negatives"])
def test_every_valid_rng_is_accepted(sampler):
    for rng in (None, 0, np.int64(3), np.random.default_rng(1)):
        result = _samplers(rng)[sampler]()
        assert result is not None


def test_counts_refuse_bools():
    x, labels = np.random.default_rng(0).standard_normal((6, 2)), np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(TypeError, match=r"^k must be an integer; got the bool True$"):
        ml.recall_at_k(x, labels, k=True)
    with pytest.raises(TypeError, match=r"^p must be an integer; got the bool True$"):
        ml.pk_batches(labels, p=True, k=2)
    with pytest.raises(TypeError, match=r"^n must be an integer; got the bool False$"):
        ml.random_negatives(labels, labels, n=np.bool_(False))


def test_use_faiss_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^use_faiss must be True or False; got 'no'$"):
        ml.mine_dataset(np.zeros((4, 2)), np.array([0, 0, 1, 1]), use_faiss="no")


def test_pk_batches_checks_its_arguments_when_called_not_at_the_first_batch():
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"^p must be >= 1; got 0$"):
        ml.pk_batches(labels, p=0, k=2)
    with pytest.raises(ValueError, match=r"^p must be at most the number of classes, 2; got 3$"):
        ml.pk_batches(labels, p=3, k=2)
    with pytest.raises(TypeError, match=r"^rng must be"):
        ml.pk_batches(labels, p=1, k=2, rng="seed")


def test_a_margin_that_would_overflow_the_loss_is_refused():
    """1e200 squared, or 1e308 plus a distance, is inf in float64: refused by name rather than returned as inf."""
    x, labels = np.random.default_rng(0).standard_normal((6, 2)), np.array([0, 0, 1, 1, 2, 2])
    message = r"^margin must be <= 1e\+18 \(margins are on the scale of the distances; .*overflow to inf\); got 1e\+"
    with pytest.raises(ValueError, match=message + "200$"):
        ml.contrastive_loss(x, labels, margin=1e200)
    with pytest.raises(ValueError, match=message + "308$"):
        ml.triplet_loss(x, labels, margin=1e308)
    with pytest.raises(ValueError, match=r"^pos_margin must be >= -1e\+18 and <= 1e\+18"):
        ml.contrastive_loss(x, labels, pos_margin=1e19)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_loss_is_finite_at_the_largest_margin(dtype):
    """At margin = MAX_MARGIN every loss's value and gradients are finite in either dtype (the bound is tight
    enough), with the worst reductions: sums over every pair."""
    from metricloss._validation import MAX_MARGIN

    rng = np.random.default_rng(1)
    m = MAX_MARGIN
    x, labels = rng.standard_normal((40, 3)).astype(dtype), np.arange(40) % 5
    a, p, n, n2 = (rng.standard_normal((5, 3)).astype(dtype) for _ in range(4))
    y, s1, s2 = np.array([1, -1, 1, -1, 1]), rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    relevance = np.arange(24).reshape(4, 6) % 3 == 0
    results = [
        ml.contrastive_loss(x, labels, margin=m, reduction="sum"),
        ml.contrastive_loss(x, labels, margin=m, form="squared", reduction="sum"),
        ml.contrastive_pair_loss(a, p, (y > 0).astype(int), margin=m),
        ml.triplet_loss(x, labels, margin=m, reduction="sum"),
        ml.triplet_loss(x, labels, margin=m, mining="hard", reduction="sum"),
        ml.triplet_margin_loss(a, p, n, margin=m),
        ml.hinge_embedding_loss(s1**2, y, margin=m),
        ml.margin_ranking_loss(s1, s2, y, margin=m),
        ml.lifted_structure_loss(x, labels, margin=m, reduction="sum"),
        ml.generalized_lifted_structure_loss(x, labels, margin=m),
        ml.quadruplet_loss(x, labels, margin=m, margin2=m),
        ml.quadruplet_margin_loss(a, p, n, n2, margin=m, margin2=m),
        ml.triplet_center_loss(x, labels, margin=m),
        ml.warp_loss(rng.standard_normal((4, 6)).astype(dtype), relevance, margin=m, rng=0),
    ]
    for value, grad in results:
        assert np.isfinite(value) and value > 1e17  # the margin is felt, and nothing overflowed
        for g in grad if isinstance(grad, tuple) else (grad,):
            assert g.dtype == dtype and np.isfinite(g).all()


def test_centre_labels_of_any_unsigned_dtype_index_the_centres_or_are_refused_with_their_value():
    x, centers = np.random.default_rng(2).standard_normal((4, 2)), np.zeros((2, 2))
    signed = ml.triplet_center_loss(x, np.array([0, 1, 1, 0]), centers=centers)
    unsigned = ml.triplet_center_loss(x, np.array([0, 1, 1, 0], dtype=np.uint64), centers=centers)
    assert signed[0] == unsigned[0]
    with pytest.raises(ValueError, match=r"got 18446744073709551615 at index 2 \(1 out of range\)"):
        ml.triplet_center_loss(x, np.array([0, 1, 2**64 - 1, 0], dtype=np.uint64), centers=centers)
    with pytest.raises(ValueError, match=r"got 18446744073709551615 at index 2 \(1 out of range\)"):
        ml.init_centers(x, np.array([0, 1, 2**64 - 1, 0], dtype=np.uint64), n_classes=2)


class _DeviceArray:
    """Like numba's DeviceNDArray: it exposes __cuda_array_interface__ and would copy itself to the host in
    __array__, so that numpy.asarray alone would run the loss on the CPU unseen."""

    def __init__(self, host):
        self.host = host
        self.__cuda_array_interface__ = {"shape": host.shape, "typestr": host.dtype.str, "data": (0, False)}

    def __array__(self, dtype=None, copy=None):
        return self.host


def test_a_gpu_array_is_refused_by_name_rather_than_copied_to_the_host_unasked():
    x, labels = np.random.default_rng(0).standard_normal((6, 3)), np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(TypeError, match=r"^embeddings must be a host array here; got a GPU array \(_DeviceArray"):
        ml.quadruplet_loss(_DeviceArray(x), labels)
    with pytest.raises(TypeError, match=r"^labels must be a host array here; .*\.copy_to_host\(\)"):
        ml.contrastive_loss(x, _DeviceArray(labels))
    with pytest.raises(TypeError, match=r"^x must be a host array"):
        ml.pairwise_similarities(_DeviceArray(x))
    one = np.array([0])
    with pytest.raises(TypeError, match=r"^triplets' a must be a host array"):
        ml.triplet_loss(x, labels, triplets=(_DeviceArray(one), one + 1, one + 2))


def test_gpu_embeddings_without_a_usable_gpu_are_refused_not_run_on_the_cpu():
    """The losses and distances that take GPU rows in place: on a machine with no usable GPU (and no simulator)
    that is a RuntimeError saying so, never a silent copy to the host (this suite runs without the simulator)."""
    x, labels = np.random.default_rng(0).standard_normal((6, 3)), np.array([0, 0, 1, 1, 2, 2])
    try:
        from numba import cuda
    except ImportError:
        pytest.skip("numba-cuda is not installed")
    if cuda.is_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(RuntimeError, match=r"no usable CUDA GPU"):
        ml.triplet_loss(_DeviceArray(x), labels)
    for call in (ml.pairwise_distances, ml.contrastive_loss, ml.lifted_structure_loss):
        with pytest.raises(RuntimeError, match=r"no usable CUDA GPU"):
            call(_DeviceArray(x), *(() if call is ml.pairwise_distances else (labels,)))


@pytest.mark.parametrize("loss", [ml.multi_similarity_loss, ml.ntxent_loss, ml.supcon_loss])
def test_a_loss_on_similarities_refuses_a_bad_similarity_naming_similarity(loss):
    """The batch engine checks the option under the name the loss takes (it once said "distance must be one of")."""
    x, labels = np.eye(4, 3), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"^similarity must be one of 'dot', 'cosine'; got None$"):
        loss(x, labels, similarity=None)


def test_a_loss_on_distances_refuses_a_bad_distance_naming_distance():
    with pytest.raises(ValueError, match=r"^distance must be one of .*; got None$"):
        ml.triplet_loss(np.eye(4, 3), np.array([0, 0, 1, 1]), distance=None)
