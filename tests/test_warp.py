"""WARP beyond the contract: the sampler's statistics and reproducibility (backends, thread counts, plain Python),
the embedding form against the score form, the cases the contract cannot take yet (random sampling; the embedding
form: see registry/warp.py), memory, relevance_matrix, and parity with LightFM.

The LightFM tests need ``lightfm``, which does not live in the main environment (its 1.17 sdist only builds with
``pip install --no-use-pep517 --no-build-isolation`` on Python 3.11); they run in their own, as the TF-Addons tests
do:  python3 -m venv .venv-lightfm && .venv-lightfm/bin/pip install setuptools wheel numpy scipy pytest
&& .venv-lightfm/bin/pip install --no-use-pep517 --no-build-isolation lightfm==1.17 && .venv-lightfm/bin/pip
install -e . && .venv-lightfm/bin/python -m pytest tests/test_warp.py -k lightfm
"""

import math
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from support import results_with_one_and_two_numba_threads

import metricloss as ml
from metricloss import textbook
from metricloss._kernels import numba as numba_kernels
from metricloss._kernels import numpy as numpy_kernels
from metricloss.testing import TOLERANCES, assert_close, check_grad

SAMPLINGS = [("random", {"rng": 4}), ("index", {}), ("exact", {})]
KERNELS = {"numpy": numpy_kernels, "numba": numba_kernels}


def as_tuple(grad):
    return grad if isinstance(grad, tuple) else (grad,)


def random_problem(rng, n_queries=40, n_items=30, density=0.15, dtype=np.float64):
    scores = rng.standard_normal((n_queries, n_items)).astype(dtype)
    relevance = rng.random((n_queries, n_items)) < density
    relevance[0] = False  # a query without a positive
    relevance[1] = True  # a query without a negative
    return scores, relevance


def run_kernel(kernels, scores, relevance, seeds, max_trials, shuffle=True):
    """warp_violators on a score matrix: (violators, trials, hinges), one per (query, positive) pair."""
    queries, positives = np.nonzero(relevance)
    offsets = np.searchsorted(queries, np.arange(len(scores) + 1)).astype(np.int64)
    n_pairs = queries.size
    out = np.empty(n_pairs, np.int64), np.empty(n_pairs, np.int64), np.empty(n_pairs)
    kernels.warp_violators(scores, scores, False, relevance, offsets, positives, seeds, 1.0, max_trials, shuffle, *out)
    return out


# --- the sampler -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_first_draw_is_uniform_over_the_negatives(backend):
    """4000 pairs with the same 9 negatives, one draw each: the drawn negative's counts pass a χ² test."""
    n_pairs, n_items = 4000, 10
    scores = np.tile(np.arange(n_items, dtype=np.float64), (n_pairs, 1))  # every negative violates item 0
    relevance = np.zeros((n_pairs, n_items), bool)
    relevance[:, 0] = True
    seeds = np.random.default_rng(0).integers(0, 2**63, size=n_pairs, dtype=np.int64)
    violators, trials, _ = run_kernel(KERNELS[backend], scores, relevance, seeds, 1)
    assert (trials == 1).all()
    counts = np.bincount(violators, minlength=n_items)[1:]
    expected = n_pairs / 9
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40, (chi2, counts)  # 8 degrees of freedom: P(χ² > 40) ≈ 3e-6


@pytest.mark.parametrize("n_violators", [1, 3, 8])
def test_the_number_of_draws_follows_sampling_without_replacement(n_violators):
    """With v violators among n = 11 negatives in a uniformly random order, P(T > t) = C(n − v, t) / C(n, t), and
    the violator found is uniform among the v: both pass χ² tests over 6000 pairs."""
    n_pairs, n = 6000, 11
    scores = np.zeros((n_pairs, n + 1))  # item 0 is the positive, s⁺ = 0
    scores[:, 1 : 1 + n_violators] = 5.0  # z = 1 − 0 + 5 > 0: violators
    scores[:, 1 + n_violators :] = -5.0  # z = 1 − 0 − 5 < 0
    relevance = np.zeros(scores.shape, bool)
    relevance[:, 0] = True
    seeds = np.random.default_rng(1).integers(0, 2**63, size=n_pairs, dtype=np.int64)
    violators, trials, _ = run_kernel(numba_kernels, scores, relevance, seeds, n)
    assert (violators >= 1).all() and (violators <= n_violators).all()
    survival = [math.comb(n - n_violators, t) / math.comb(n, t) for t in range(n + 1)]
    expected = n_pairs * np.array([survival[t - 1] - survival[t] for t in range(1, n - n_violators + 2)])
    counts = np.bincount(trials, minlength=n - n_violators + 2)[1:]
    kept = expected >= 5  # χ² needs expected counts of at least 5
    chi2 = float(((counts[kept] - expected[kept]) ** 2 / expected[kept]).sum())
    assert chi2 < 45, (chi2, counts, expected)
    if n_violators > 1:
        found = np.bincount(violators, minlength=n_violators + 1)[1:]
        uniform = n_pairs / n_violators
        assert float(((found - uniform) ** 2 / uniform).sum()) < 35


def test_an_uncapped_scan_draws_every_negative_once_when_none_violates():
    """max_trials = n and no violator: the pair draws n negatives (without replacement, so it stops there)."""
    scores = np.zeros((50, 13))
    scores[:, 0] = 10.0
    relevance = np.zeros(scores.shape, bool)
    relevance[:, 0] = True
    seeds = np.random.default_rng(2).integers(0, 2**63, size=50, dtype=np.int64)
    for kernels in (numpy_kernels, numba_kernels):
        violators, trials, hinges = run_kernel(kernels, scores, relevance, seeds, 1000)
        assert (violators == -1).all() and (trials == 12).all() and (hinges == 0).all()


@pytest.mark.parametrize("max_trials", [1, 3, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_and_numba_draw_exactly_the_same_negatives(max_trials, dtype):
    """Same seeds, same draws: every pair's violator, number of draws and hinge are bitwise equal."""
    scores, relevance = random_problem(np.random.default_rng(3), 60, 45, dtype=dtype)
    seeds = np.random.default_rng(4).integers(0, 2**63, size=int(relevance.sum()), dtype=np.int64)
    reference = run_kernel(numpy_kernels, scores, relevance, seeds, max_trials or 45)
    for got, expected in zip(
        run_kernel(numba_kernels, scores, relevance, seeds, max_trials or 45), reference, strict=True
    ):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("sampling", "seeded"), SAMPLINGS)
@pytest.mark.parametrize("weighting", ml.WARP_WEIGHTINGS)
def test_numpy_and_numba_backends_give_the_same_loss(sampling, seeded, weighting):
    scores, relevance = random_problem(np.random.default_rng(5))
    for loss, arrays in (
        (ml.warp_loss, (scores, relevance)),
        (ml.warp_embedding_loss, (scores[:, :4], scores[:30, 4:8].copy(), relevance)),
    ):
        value, grad = loss(*arrays, sampling=sampling, weighting=weighting, backend="numba", **seeded)
        reference = loss(*arrays, sampling=sampling, weighting=weighting, backend="numpy", **seeded)
        assert value == pytest.approx(reference[0], rel=1e-12)
        for got, expected in zip(as_tuple(grad), as_tuple(reference[1]), strict=True):
            assert_close(got, expected, rtol=1e-12)


def test_an_int_seed_repeats_and_a_generator_advances():
    scores, relevance = random_problem(np.random.default_rng(6))
    first = ml.warp_loss(scores, relevance, rng=11)
    assert ml.warp_loss(scores, relevance, rng=11)[0] == first[0]
    generator = np.random.default_rng(11)
    from_generator = [ml.warp_loss(scores, relevance, rng=generator)[0] for _ in range(3)]
    assert from_generator[0] == first[0]  # the int seed is default_rng(seed)
    assert len(set(from_generator)) == 3  # each call draws fresh seeds
    assert (
        ml.warp_loss(scores, relevance, sampling="index", rng=generator)[0]
        == ml.warp_loss(scores, relevance, sampling="index")[0]
    )  # only the random sampling uses rng


_THREADS_SCRIPT = """
import json, sys
import numpy as np
import metricloss as ml
rng = np.random.default_rng(7)
scores = rng.standard_normal((300, 200)).astype(np.float32)
relevance = rng.random((300, 200)) < 0.05
x, y = rng.standard_normal((300, 8)), rng.standard_normal((200, 8))
out = {}
for max_trials in (None, 4):
    value, grad = ml.warp_loss(scores, relevance, rng=3, max_trials=max_trials)
    out[f"scores-{max_trials}"] = [value.hex(), grad.tobytes().hex()]
    value, (gx, gy) = ml.warp_embedding_loss(x, y, relevance, rng=3, max_trials=max_trials)
    out[f"embeddings-{max_trials}"] = [value.hex(), gx.tobytes().hex(), gy.tobytes().hex()]
json.dump(out, sys.stdout)
"""


def test_results_are_bitwise_equal_with_one_and_two_numba_threads():
    one_thread, two_threads = results_with_one_and_two_numba_threads(_THREADS_SCRIPT)
    assert one_thread == two_threads


_PURE_PYTHON_SCRIPT = """
import warnings
import numpy as np
import metricloss as ml
warnings.simplefilter("error")
rng = np.random.default_rng(8)
scores = rng.standard_normal((12, 9))
relevance = rng.random((12, 9)) < 0.3
relevance[0], relevance[1] = False, True
x, y = scores[:, :3].copy(), rng.standard_normal((9, 3))
for sampling, extra in (("random", {"rng": 2}), ("index", {"max_trials": 2}), ("exact", {})):
    for loss, arrays in ((ml.warp_loss, (scores, relevance)), (ml.warp_embedding_loss, (x, y, relevance))):
        value, grad = loss(*arrays, sampling=sampling, backend="numba", **extra)
        reference_value, reference_grad = loss(*arrays, sampling=sampling, backend="numpy", **extra)
        assert abs(value - reference_value) <= 1e-12 * abs(reference_value), sampling
        pairs = zip(grad, reference_grad) if isinstance(grad, tuple) else [(grad, reference_grad)]
        for got, expected in pairs:
            assert np.allclose(got, expected, rtol=1e-12, atol=1e-14), sampling
print("ok")
"""


def test_the_numba_kernels_are_valid_python_under_numba_disable_jit():
    """The kernels run as plain Python (no int64 overflow in the hash, no warnings) and agree with NumPy."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run([sys.executable, "-c", _PURE_PYTHON_SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


# --- values and gradients ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hyper",
    [
        {"rng": 0},
        {"rng": "generator", "max_trials": 2, "weighting": "log"},
        {"rng": 5, "reduction": "mean", "margin": 0.3},
        {"rng": 9, "reduction": "mean_nonzero", "max_trials": 1},
    ],
    ids=["default", "generator-capped-log", "mean-margin", "mean_nonzero-one-draw"],
)
@pytest.mark.parametrize("seed", range(3))
def test_random_sampling_equals_the_textbooks_reading_of_the_documented_scheme(hyper, seed):
    """The textbook twin re-derives the draws from the scheme's text (plain Python integers), pair by pair; a
    Generator is used as its int seed is (the textbook gets a twin in the same state)."""
    scores, relevance = random_problem(np.random.default_rng(10 + seed), 9, 12, density=0.3)

    def seeded():
        return {**hyper, "rng": np.random.default_rng(3)} if hyper["rng"] == "generator" else hyper

    value, _ = ml.warp_loss(scores, relevance, **seeded())
    expected = textbook.warp_loss(scores, relevance, **seeded())[0]
    assert value == pytest.approx(expected, rel=TOLERANCES[np.dtype(np.float64)], abs=1e-12)


@pytest.mark.parametrize(("sampling", "seeded"), SAMPLINGS)
@pytest.mark.parametrize("seed", range(3))
def test_the_embedding_form_equals_its_textbook_twin_and_central_differences(sampling, seeded, seed):
    rng = np.random.default_rng(20 + seed)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((9, 3))
    relevance = rng.random((6, 9)) < 0.3
    hyper = {"sampling": sampling, **seeded}
    value, _ = ml.warp_embedding_loss(x, y, relevance, **hyper)
    assert value == pytest.approx(textbook.warp_embedding_loss(x, y, relevance, **hyper)[0], rel=1e-9, abs=1e-12)
    check_grad(lambda a, b: ml.warp_embedding_loss(a, b, relevance, **hyper), x, y, rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_random_sampling_gradient_matches_central_differences(seed):
    """With a fixed seed the draws are fixed, so the value is piecewise smooth in the scores."""
    scores, relevance = random_problem(np.random.default_rng(30 + seed), 7, 10, density=0.3)
    for hyper in ({"rng": 1}, {"rng": 2, "weighting": "log", "reduction": "mean", "max_trials": 3}):
        check_grad(lambda s, hyper=hyper: ml.warp_loss(s, relevance, **hyper), scores, rtol=1e-6)


@pytest.mark.parametrize(("sampling", "seeded"), SAMPLINGS)
@pytest.mark.parametrize(("features", "density"), [(3, 0.1), (40, 0.9)], ids=["pair-by-pair", "dense-pullback"])
def test_the_embedding_form_is_the_score_form_pulled_back_through_x_yt(sampling, seeded, features, density):
    """warp_embedding_loss(X, Y) = warp_loss(X Yᵀ), and its gradients are G Y and Gᵀ X for G the score gradient;
    few pairs go pair by pair, many (pairs·F > Q·N) through the dense GEMMs."""
    rng = np.random.default_rng(40)
    x, y = rng.standard_normal((12, features)), rng.standard_normal((15, features))
    relevance = rng.random((12, 15)) < density
    value, (gx, gy) = ml.warp_embedding_loss(x, y, relevance, sampling=sampling, **seeded)
    score_value, g = ml.warp_loss(x @ y.T, relevance, sampling=sampling, **seeded)
    assert value == pytest.approx(score_value, rel=1e-12)
    assert_close(gx, g @ y, rtol=1e-12)
    assert_close(gy, g.T @ x, rtol=1e-12)


def test_the_sampled_loss_estimates_the_exact_loss():
    """Averaged over seeds, the sampled gradient puts L(⌊n/T⌋) on the positive; with every negative violating
    T = 1, so the sampled and exact forms agree exactly; with a few violators they agree on average within 25%."""
    rng = np.random.default_rng(50)
    scores = rng.standard_normal((30, 40)) + 3.0
    relevance = np.zeros(scores.shape, bool)
    relevance[:, 0] = True
    scores[:, 0] = -5.0  # every negative violates: T = 1, rank = n = r
    sampled, exact = ml.warp_loss(scores, relevance, rng=0), ml.warp_loss(scores, relevance, sampling="exact")
    assert sampled[1][:, 0] == pytest.approx(exact[1][:, 0])
    scores[:, 0] = 4.5  # a few violators per query
    exact_value = ml.warp_loss(scores, relevance, sampling="exact")[0]
    generator = np.random.default_rng(1)
    mean_value = np.mean([ml.warp_loss(scores, relevance, rng=generator)[0] for _ in range(200)])
    assert mean_value == pytest.approx(exact_value, rel=0.25)


def test_a_violator_shared_by_two_positives_accumulates_both_gradients():
    scores = np.array([[3.0, 2.5, 5.0, -1.0]])
    relevance = np.array([[True, True, False, False]])
    value, grad = ml.warp_loss(scores, relevance, sampling="index")
    # both positives find item 2 at the first draw: rank ⌊2/1⌋ = 2, L = 1.5; z = 1 − 3 + 5 = 3 and 1 − 2.5 + 5
    assert value == pytest.approx(1.5 * 3 + 1.5 * 3.5)
    np.testing.assert_allclose(grad, [[-1.5, -1.5, 3.0, 0.0]])


def test_a_negative_exactly_at_the_margin_does_not_violate():
    scores = np.array([[2.0, 1.0, 1.5]])  # z = 1 − 2 + 1 = 0 for item 1: not > 0
    relevance = np.array([[True, False, False]])
    value, grad = ml.warp_loss(scores, relevance, sampling="index")
    assert value == 0.5  # item 2 (z = 0.5) at T = 2: rank ⌊2/2⌋ = 1, L(1) = 1
    np.testing.assert_array_equal(grad, [[-1.0, 0.0, 1.0]])
    assert ml.warp_loss(scores, relevance, sampling="exact")[0] == 0.5  # r = 1


# --- memory ------------------------------------------------------------------------------------------------------


def test_the_sampled_embedding_form_never_builds_a_queries_by_items_score_matrix():
    """At Q = N = 3000, F = 8 with 3 positives per query, peak memory stays below 1/8 of one Q×N float64 matrix
    (72 MB): the scores are computed for the drawn items only, and the pullback is O(pairs·F)."""
    rng = np.random.default_rng(60)
    q = n = 3000
    x, y = rng.standard_normal((q, 8)), rng.standard_normal((n, 8))
    relevance = np.zeros((q, n), bool)
    relevance[np.arange(q)[:, None], rng.integers(0, n, size=(q, 3))] = True
    ml.warp_embedding_loss(x[:5], y[:5], relevance[:5, :5], rng=0)  # compile outside the measurement
    tracemalloc.start()
    ml.warp_embedding_loss(x, y, relevance, rng=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= q * n * 8 / 8, f"peak {peak / 2**20:.1f} MiB"


def test_the_score_form_uses_about_one_gradient_matrix_of_memory():
    rng = np.random.default_rng(61)
    scores = rng.standard_normal((1500, 1500)).astype(np.float32)
    relevance = rng.random(scores.shape) < 0.01
    ml.warp_loss(scores[:5, :5], relevance[:5, :5], rng=0)
    tracemalloc.start()
    ml.warp_loss(scores, relevance, rng=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 1.6 * scores.nbytes, f"peak {peak / scores.nbytes:.2f} score matrices"


# --- relevance_matrix and input checks ---------------------------------------------------------------------------


def test_relevance_matrix_from_lists_and_from_a_padded_array():
    from_lists = ml.relevance_matrix([np.array([3, 0]), [], [1, 1]], 4)
    expected = np.array([[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]], bool)
    np.testing.assert_array_equal(from_lists, expected)
    np.testing.assert_array_equal(ml.relevance_matrix(np.array([[3, 0], [-1, -1], [1, -1]]), 4), expected)


@pytest.mark.parametrize(
    ("positives", "n_items", "exception", "text"),
    [
        ([[0, 4]], 4, ValueError, "positives must hold item indices in [0, 4)"),
        ([[0, -2]], 4, ValueError, "got -2 in positives[0]"),
        ([[0.5]], 4, TypeError, "positives must be a list of 1-D integer arrays"),
        ([[[0]]], 4, TypeError, "got positives[0] of shape (1, 1)"),
        ([[0]], 0, ValueError, "n_items must be >= 1"),
    ],
)
def test_relevance_matrix_refuses_bad_index_lists(positives, n_items, exception, text):
    with pytest.raises(exception, match=re.escape(text)):
        ml.relevance_matrix(positives, n_items)


def test_input_errors_name_the_argument():
    scores = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"relevance must have shape \(2, 3\) to match scores"):
        ml.warp_loss(scores, np.zeros((3, 2), bool))
    with pytest.raises(TypeError, match=r"relevance must be a boolean array.*relevance_matrix"):
        ml.warp_loss(scores, np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="items must have 2 features to match queries"):
        ml.warp_embedding_loss(np.zeros((2, 2)), np.zeros((3, 3)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match=r"relevance must have shape \(2, 3\) to match \(queries rows"):
        ml.warp_embedding_loss(np.zeros((2, 2)), np.zeros((3, 2)), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="rng must be a seed >= 0"):
        ml.warp_loss(scores, np.zeros((2, 3), bool), rng=-1)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        ml.warp_loss(scores, np.zeros((2, 3), bool), rng=True)


# --- LightFM -----------------------------------------------------------------------------------------------------


def lightfm_one_step(user_embeddings, item_embeddings, positives, *, max_sampled=1, lr=0.05, seed=0):
    """One epoch of LightFM(loss="warp", adagrad) on user 0's interactions with ``positives``: returns the model.
    Adagrad's accumulators start at 1, so its first step is exactly −lr × the gradient."""
    lightfm = pytest.importorskip("lightfm", reason="LightFM parity runs in its own environment: see the module doc")
    sparse = pytest.importorskip("scipy.sparse")
    n_users, features = user_embeddings.shape
    n_items = item_embeddings.shape[0]
    model = lightfm.LightFM(
        no_components=features,
        loss="warp",
        learning_schedule="adagrad",
        learning_rate=lr,
        item_alpha=0.0,
        user_alpha=0.0,
        max_sampled=max_sampled,
        random_state=seed,
    )
    model._initialize(features, n_items, n_users)  # then our embeddings in place of its random ones
    model.user_embeddings[:] = user_embeddings
    model.item_embeddings[:] = item_embeddings
    rows, cols = np.zeros(len(positives), dtype=np.int32), np.array(positives, dtype=np.int32)
    interactions = sparse.coo_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_users, n_items))
    model.fit_partial(interactions, epochs=1, num_threads=1)
    return model


def violating_negatives(n_items, features=4, seed=0):
    """One user, item 0 its positive scoring low, every other item the same vector, all violating by a margin of
    about 1: LightFM's first draw of a negative violates, and whichever negative it draws, the update is the same
    up to which row it lands on."""
    rng = np.random.default_rng(seed)
    user = (0.3 * rng.standard_normal((1, features))).astype(np.float32)
    items = np.tile((0.3 * rng.standard_normal(features)).astype(np.float32), (n_items, 1))
    items[0] = -2 * user[0]
    return user, items


def assert_lightfm_step_is_minus_lr_times(model, user, items, positives, ours, lr=0.05, factor=1.0):
    """LightFM's change of the user embedding, the positive's embedding and bias, and (summed: every negative is
    the same vector) the negatives', equal −lr · factor · our gradients."""
    (g_user, g_items), g_scores = ours
    negative = np.ones(items.shape[0], bool)
    negative[positives] = False
    assert np.count_nonzero(np.abs(model.item_embeddings - items).sum(axis=1)) == 2, "LightFM made no update"
    step = -lr * factor
    assert_close(model.user_embeddings - user, step * g_user, rtol=1e-4)
    assert_close(model.item_embeddings[0] - items[0], step * g_items[0], rtol=1e-4)
    assert_close((model.item_embeddings - items)[negative].sum(axis=0), step * g_items[negative].sum(axis=0), rtol=1e-4)
    assert_close(model.item_biases[0], step * g_scores[0, 0], rtol=1e-4)
    assert_close(model.item_biases[negative].sum(), step * g_scores[0, negative].sum(), rtol=1e-4)


def ours_log_weighted(user, items, positives):
    relevance = np.zeros((1, items.shape[0]), bool)
    relevance[0, positives] = True
    u, i = user.astype(np.float64), items.astype(np.float64)
    hyper = {"weighting": "log", "max_trials": 1, "reduction": "sum", "rng": 0}
    _, grads = ml.warp_embedding_loss(u, i, relevance, **hyper)
    return grads, ml.warp_loss(u @ i.T, relevance, **hyper)[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lightfm_warp_step_is_minus_lr_times_our_log_weighted_gradient(seed):
    """One positive among N = 50 items, max_sampled = 1: LightFM's weight is ln ⌊(N − 1)/1⌋ = ln 49, ours
    ln ⌊n/T⌋ = ln 49 (n = N − 1 negatives); its adagrad step is −lr × warp_embedding_loss(weighting="log")'s
    gradient (user, positive item, negatives), and its item-bias step −lr × warp_loss's score gradient."""
    user, items = violating_negatives(50, seed=seed)
    model = lightfm_one_step(user, items, [0], seed=seed)
    assert_lightfm_step_is_minus_lr_times(model, user, items, [0], ours_log_weighted(user, items, [0]))


@pytest.mark.parametrize("seed", range(6))
def test_lightfm_rank_estimate_after_several_draws_is_ours(seed):
    """Items 1..24 violate (one vector), items 25..49 do not (another), max_sampled = 10. LightFM's weight tells
    how many draws T it made, ln ⌊49/T⌋ (distinct for T <= 10); put T − 1 non-violators first in the item order and
    our index scan makes the same T draws: its step equals ours with sampling="index", weighting="log"."""
    user, items = violating_negatives(50, seed=seed)
    positive_score = float(user[0] @ items[0])
    items[25:] = user[0] * ((positive_score - 2) / float(user[0] @ user[0]))  # s = s⁺ − 2: z = −1
    model = lightfm_one_step(user, items, [0], max_sampled=10, seed=seed)
    multiplier = float(model.item_biases[0]) / 0.05  # Δb⁺ = −lr · (−L)
    draws = [t for t in range(1, 11) if abs(math.log(49 // t) - multiplier) < 1e-5]
    assert len(draws) == 1, multiplier
    order = np.r_[0, 25 : 25 + draws[0] - 1, 1:25, 25 + draws[0] - 1 : 50]  # item order for our index scan
    relevance = np.eye(1, 50, dtype=bool)
    u, i = user.astype(np.float64), items[order].astype(np.float64)
    hyper = {"sampling": "index", "weighting": "log"}
    _, (g_user, g_items) = ml.warp_embedding_loss(u, i, relevance, **hyper)
    g_scores = ml.warp_loss(u @ i.T, relevance, **hyper)[1]
    back = np.argsort(order)
    violators = np.zeros(50, bool)
    violators[1:25] = True
    assert_close(model.user_embeddings - user, -0.05 * g_user, rtol=1e-4)
    assert_close(model.item_embeddings[0] - items[0], -0.05 * g_items[back][0], rtol=1e-4)
    moved = (model.item_embeddings - items)[violators].sum(axis=0)
    assert_close(moved, -0.05 * g_items[back][violators].sum(axis=0), rtol=1e-4)
    assert not (model.item_embeddings - items)[25:].any()
    assert_close(model.item_biases[violators].sum(), -0.05 * g_scores[0, back][violators].sum(), rtol=1e-4)


def test_lightfm_ranks_against_all_items_where_we_rank_against_the_negatives():
    """Pinned difference: with two positives LightFM still estimates the rank as ⌊(N − 1)/T⌋ = 49, where ours is
    ⌊n/T⌋ = 48 (the query's negatives). Item 1, the second positive, scores 3: no negative violates it (in either
    implementation its pair contributes nothing), and a draw of it for item 0 is a positive, not a violator."""
    user, items = violating_negatives(50, seed=3)
    items[1] = user[0] * (3.0 / float(user[0] @ user[0]))
    model = lightfm_one_step(user, items, [0, 1], seed=4)
    ours = ours_log_weighted(user, items, [0, 1])
    assert_lightfm_step_is_minus_lr_times(model, user, items, [0, 1], ours, factor=math.log(49) / math.log(48))


def test_lightfm_clips_the_weight_at_10():
    """Pinned difference: LightFM clips its weight at 10 (MAX_LOSS); with N = 30000 items ln 29999 ≈ 10.31."""
    user, items = violating_negatives(30_000, features=2, seed=5)
    model = lightfm_one_step(user, items, [0], seed=6)
    factor = 10.0 / math.log(29_999)
    assert_lightfm_step_is_minus_lr_times(model, user, items, [0], ours_log_weighted(user, items, [0]), factor=factor)
