"""quadruplet_loss and quadruplet_margin_loss beyond the contract: the first term against pytorch-metric-learning,
the whole loss (adaptive margins included) against torch autograd on every enumerated quadruplet, the definitions
of other codebases pinned, the pair kernel (both backends, both paths) against a loop over every quadruplet,
determinism, O(B²) memory and the kernels as plain Python."""

import itertools
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from registry import REGISTRY
from support import results_with_one_and_two_numba_threads

import metricloss as ml
from metricloss import textbook
from metricloss._batch import class_index
from metricloss._kernels import numba as numba_kernels
from metricloss._kernels import numpy as numpy_kernels
from metricloss.testing import TOLERANCES, assert_close, check_grad

DTYPES = [np.float32, np.float64]
KERNELS = [numpy_kernels, numba_kernels]


def pk_batch(rng, p, k, features, dtype=np.float64, spread=0.5):
    """P classes of K samples around their own centres, in shuffled order."""
    labels = rng.permutation(np.repeat(np.arange(p), k))
    centers = spread * rng.standard_normal((p, features))
    return (centers[labels] + 0.5 * rng.standard_normal((p * k, features))).astype(dtype), labels


# --- the definition, against torch -----------------------------------------------------------------------------


def _torch_distances(x, rows, cols, distance):
    diff = x[rows] - x[cols]
    squared = (diff * diff).sum(dim=1)
    return squared if distance == "sqeuclidean" else squared.sqrt()


def _torch_terms(x, labels, adaptive_margins, margin, margin2, distance):
    """Every triplet's and every quadruplet's term by torch, over index arrays (small batches only): an
    implementation that shares nothing with metricloss's counting kernels. Autograd goes through the adaptive
    margins."""
    n = len(labels)
    triplets = np.array(
        [
            (i, j, k)
            for i, j, k in itertools.product(range(n), repeat=3)
            if i != j and labels[i] == labels[j] and labels[k] != labels[i]
        ]
    )
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    positive = np.array([p for p in pairs if labels[p[0]] == labels[p[1]]])
    negative = np.array([p for p in pairs if labels[p[0]] != labels[p[1]]])
    quadruplets = np.array(
        [
            (i, j, l, k)
            for (i, j), (l, k) in itertools.product(positive, negative)  # noqa: E741 (the paper's indices)
            if labels[l] != labels[i] and labels[k] != labels[i]
        ]
    )
    alpha1, alpha2 = margin, margin2
    if adaptive_margins:
        gap = torch.relu(
            _torch_distances(x, *negative.T, distance).mean() - _torch_distances(x, *positive.T, distance).mean()
        )
        alpha1, alpha2 = margin * gap, margin2 * gap
    first = torch.relu(
        _torch_distances(x, triplets[:, 0], triplets[:, 1], distance)
        - _torch_distances(x, triplets[:, 0], triplets[:, 2], distance)
        + alpha1
    )
    second = torch.relu(
        _torch_distances(x, quadruplets[:, 0], quadruplets[:, 1], distance)
        - _torch_distances(x, quadruplets[:, 2], quadruplets[:, 3], distance)
        + alpha2
    )
    return first, second


def _torch_reduce(terms, reduction):
    if reduction == "sum":
        return terms.sum()
    count = terms.numel() if reduction == "mean" else (terms > 0).sum()
    return terms.sum() / count


@pytest.mark.parametrize("adaptive_margins", [False, True])
@pytest.mark.parametrize(
    ("distance", "reduction", "split_reduction"),
    [("sqeuclidean", "mean", True), ("euclidean", "mean_nonzero", True), ("sqeuclidean", "sum", False)],
)
def test_value_and_gradient_equal_torch_autograd_over_every_quadruplet(
    adaptive_margins, distance, reduction, split_reduction
):
    """The counting kernels and the hand-derived cotangent (the adaptive margins' derivative included) against
    autograd on explicitly enumerated quadruplets, float64."""
    x, labels = pk_batch(np.random.default_rng(0), 4, 3, 5)
    value, grad = ml.quadruplet_loss(
        x,
        labels,
        adaptive_margins=adaptive_margins,
        margin=1.2,
        margin2=0.6,
        distance=distance,
        reduction=reduction,
        split_reduction=split_reduction,
    )
    tensor = torch.tensor(x, requires_grad=True)
    first, second = _torch_terms(tensor, labels, adaptive_margins, 1.2, 0.6, distance)
    if split_reduction:
        expected = _torch_reduce(first, reduction) + _torch_reduce(second, reduction)
    else:
        expected = _torch_reduce(torch.cat([first, second]), reduction)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    assert_close(grad, tensor.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("power", [1, 2])
def test_first_term_is_pml_triplet_margin_loss(dtype, power):
    """pytorch-metric-learning has no quadruplet loss; its TripletMarginLoss (averaging the non-zero terms) is the
    first term: with reduction="mean_nonzero", ours is PML's value plus the second term's, gradients likewise."""
    x, labels = pk_batch(np.random.default_rng(1), 5, 4, 6, dtype)
    distance = "euclidean" if power == 1 else "sqeuclidean"
    pml_distance = pml_distances.LpDistance(normalize_embeddings=False, power=power)
    embeddings = torch.tensor(x, requires_grad=True)
    theirs = pml_losses.TripletMarginLoss(margin=0.7, distance=pml_distance)(embeddings, torch.as_tensor(labels))
    _, second = _torch_terms(embeddings, labels, False, 0.7, 0.3, distance)
    second_term = _torch_reduce(second, "mean_nonzero")
    (theirs + second_term).backward()
    value, grad = ml.quadruplet_loss(x, labels, margin=0.7, margin2=0.3, distance=distance, reduction="mean_nonzero")
    assert value - second_term.item() == pytest.approx(theirs.item(), rel=TOLERANCES[np.dtype(dtype)])
    assert grad.dtype == dtype
    assert_close(grad, embeddings.grad.numpy())


def test_every_option_is_registered_in_the_contract():
    """Each option value of both forms has a contract case, so that the ladder runs on every configuration."""
    defaults = {"adaptive_margins": False, "distance": "sqeuclidean", "reduction": "mean", "split_reduction": True}
    options = {"adaptive_margins": (False, True), "distance": ml.SYMMETRIC_DISTANCES, "reduction": ml.REDUCTIONS}
    options["split_reduction"] = (True, False)
    for form in ("quadruplet[", "quadruplet_margin["):
        hypers = [case.hyper for case in REGISTRY if case.id.startswith(form)]
        for name, values in options.items():
            assert {hyper.get(name, defaults[name]) for hyper in hypers} == set(values), (form, name)


# --- other definitions, pinned ---------------------------------------------------------------------------------


def test_the_papers_sum_over_ordered_indices_counts_each_quadruplet_four_times():
    """Eq. 3 sums the second term over ordered (i, j) and (l, k): 4× the sum over unordered pairs used here."""
    x, labels = pk_batch(np.random.default_rng(2), 4, 3, 4)
    d = ml.pairwise_distances(x, distance="sqeuclidean")
    ordered = sum(
        max(d[i, j] - d[l, k] + 0.5, 0.0)
        for i, j, l, k in itertools.product(range(12), repeat=4)  # noqa: E741 (the paper's indices)
        if i != j and labels[i] == labels[j] and labels[l] != labels[k] and labels[i] not in (labels[l], labels[k])
    )
    both, _ = ml.quadruplet_loss(x, labels, reduction="sum")
    first_only, _ = ml.quadruplet_loss(x, labels, reduction="sum", margin2=0.5, split_reduction=True)
    triplets, _ = ml.triplet_loss(x, labels, margin=1.0, distance="sqeuclidean", reduction="sum")
    assert both == pytest.approx(triplets + ordered / 4, rel=1e-12)
    assert first_only == both


def test_roth_et_al_criterion_on_the_same_rows():
    """Roth et al.'s criteria/quadruplet.py, on given rows: mean(relu(‖a − p‖ − ‖a − n‖ + α₁)) + mean(relu(‖a − p‖
    − ‖n − n'‖ + α₂)) with α₁ = α₂ = 0.2, written here in torch: distance="euclidean", margin=margin2=0.2."""
    rng = np.random.default_rng(3)
    rows = [rng.standard_normal((7, 5)) for _ in range(4)]
    a, p, n, n2 = (torch.tensor(r, requires_grad=True) for r in rows)
    d_ap = torch.norm(a - p, p=2, dim=-1)
    theirs = (
        torch.relu(d_ap - torch.norm(a - n, p=2, dim=-1) + 0.2).mean()
        + torch.relu(d_ap - torch.norm(n - n2, p=2, dim=-1) + 0.2).mean()
    )
    theirs.backward()
    value, grads = ml.quadruplet_margin_loss(*rows, distance="euclidean", margin=0.2, margin2=0.2)
    assert value == pytest.approx(theirs.item(), rel=1e-12)
    for got, tensor in zip(grads, (a, p, n, n2), strict=True):
        assert_close(got, tensor.grad.numpy(), rtol=1e-12)


def test_the_common_snippet_is_the_default_reduction():
    """(relu(d_ap − d_an + m1) + relu(d_ap − d_nn + m2)).mean() with squared distances: the defaults; a joint
    mean over all 2N terms (split_reduction=False) is half of it."""
    rng = np.random.default_rng(4)
    rows = [rng.standard_normal((9, 3)) for _ in range(4)]
    a, p, n, n2 = (torch.tensor(r) for r in rows)
    d_ap = ((a - p) ** 2).sum(1)
    snippet = (torch.relu(d_ap - ((a - n) ** 2).sum(1) + 1.0) + torch.relu(d_ap - ((n - n2) ** 2).sum(1) + 0.5)).mean()
    assert ml.quadruplet_margin_loss(*rows)[0] == pytest.approx(snippet.item(), rel=1e-12)
    assert ml.quadruplet_margin_loss(*rows, split_reduction=False)[0] == pytest.approx(snippet.item() / 2, rel=1e-12)


def test_adaptive_margins_are_the_batchs_margins_held_fixed_plus_their_derivative():
    """The value with adaptive_margins=True is the value with margins w·[μ_n − μ_p]₊ fixed; the gradients differ by the
    margins' own derivative (checked against autograd above), which is not 0 here."""
    x, labels = pk_batch(np.random.default_rng(5), 5, 3, 4, spread=1.0)
    d = ml.pairwise_distances(x, distance="sqeuclidean")
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), 1)
    gap = d[~same & upper].mean() - d[same & upper].mean()
    assert gap > 0
    hard_value, hard_grad = ml.quadruplet_loss(x, labels, margin=1.0, margin2=0.5, adaptive_margins=True)
    fixed_value, fixed_grad = ml.quadruplet_loss(x, labels, margin=gap, margin2=0.5 * gap)
    assert hard_value == pytest.approx(fixed_value, rel=1e-12)
    assert np.abs(hard_grad - fixed_grad).max() > 1e-3
    check_grad(lambda e: ml.quadruplet_loss(e, labels, adaptive_margins=True), x)


# --- the pair kernel -------------------------------------------------------------------------------------------


def _pairs_by_loops(d, labels, margin2):
    """The second term's sum, counts and ∂/∂d on each pair, from a loop over every quadruplet."""
    n = len(labels)
    value, n_active, n_terms, g = 0.0, 0, 0, np.zeros((n, n))
    for i, j, l, k in itertools.product(range(n), repeat=4):  # noqa: E741 (the paper's indices)
        if i < j and l < k and labels[i] == labels[j] and labels[l] != labels[k]:
            if labels[i] in (labels[l], labels[k]):
                continue
            n_terms += 1
            if float(d[l, k]) < float(d[i, j]) + margin2:
                value += float(d[i, j]) + margin2 - float(d[l, k])
                n_active += 1
                g[i, j] += 1
                g[l, k] -= 1
    return value, n_active, n_terms, g + g.T


def _kernel_inputs(rng, n, n_classes, ties):
    labels = rng.integers(0, n_classes, n)
    x = rng.integers(-2, 3, (n, 2)).astype(float) if ties else rng.standard_normal((n, 3))
    d = ((x[:, None] - x[None]) ** 2).sum(axis=-1)
    return d, labels, class_index(labels, labels)


@pytest.mark.parametrize("kernels", KERNELS, ids=["numpy", "numba"])
@pytest.mark.parametrize("seed", range(12))
def test_pair_kernel_equals_a_loop_over_every_quadruplet(kernels, seed):
    """Sum, counts and cotangent (g + gᵀ) to 1e-12, on small batches with up to five classes, ties (an integer grid:
    duplicated rows, equal distances, thresholds equal to distances) included; the cotangent the same when
    written over d itself, and divided by d (0 where d = 0) with ``divide``."""
    rng = np.random.default_rng(seed)
    d, labels, classes = _kernel_inputs(rng, int(rng.integers(1, 15)), 5, seed % 2)
    margin2 = [0.0, 0.5, 2.0][seed % 3]
    value, n_active, n_terms, g = _pairs_by_loops(d, labels, margin2)
    for divide in (False, True):
        out = np.full_like(d, np.nan)
        result = kernels.quadruplet_pairs(d, classes, margin2, out, divide)
        assert result[0] == pytest.approx(value, rel=1e-12, abs=1e-12)
        assert result[1:] == (n_active, n_terms)
        expected = np.divide(g, d, out=np.zeros_like(g), where=d > 0) if divide else g
        assert_close(out + out.T, expected, rtol=1e-12)
        in_place = d.copy()
        kernels.quadruplet_pairs(in_place, classes, margin2, in_place, divide)
        np.testing.assert_array_equal(in_place, out)


@pytest.mark.parametrize(("p", "k"), [(175, 4), (3, 40)], ids=["PxK-sweep", "large-classes-search"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_pair_kernel_equals_the_numpy_reference(p, k, dtype):
    """Classes of 4 take the sweep over their thresholds, classes of 40 the binary search; 700 and 120 samples
    cross several chunks. Same sums and counts, and the same cotangent entry by entry."""
    x, labels = pk_batch(np.random.default_rng(6), p, k, 8, dtype)
    d = ml.pairwise_distances(x, distance="sqeuclidean")
    classes = class_index(labels, labels)
    margin2 = float(np.median(d)) / 4
    results, outs = [], []
    for kernels in KERNELS:
        out = np.empty_like(d)
        results.append(kernels.quadruplet_pairs(d, classes, margin2, out, True))
        outs.append(out)
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    assert results[1][1:] == results[0][1:] and results[0][1] > 0
    assert_close(outs[1], outs[0], rtol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("adaptive_margins", [False, True])
@pytest.mark.parametrize("distance", ml.SYMMETRIC_DISTANCES)
def test_numba_and_numpy_backends_agree_on_larger_batches(adaptive_margins, distance):
    x, labels = pk_batch(np.random.default_rng(7), 40, 4, 6)
    options = {"adaptive_margins": adaptive_margins, "distance": distance}
    value, grad = ml.quadruplet_loss(x, labels, **options, backend="numba")
    expected_value, expected_grad = ml.quadruplet_loss(x, labels, **options, backend="numpy")
    assert value == pytest.approx(expected_value, rel=1e-12)
    assert_close(grad, expected_grad, rtol=1e-11)


@pytest.mark.parametrize("adaptive_margins", [False, True])
@pytest.mark.parametrize(("p", "k"), [(6, 4), (3, 9)], ids=["PxK", "large-classes"])
def test_value_equals_the_loop_oracle_and_gradient_central_differences(adaptive_margins, p, k):
    x, labels = pk_batch(np.random.default_rng(8), p, k, 3)
    for reduction in ("mean", "mean_nonzero"):
        options = {"adaptive_margins": adaptive_margins, "reduction": reduction, "margin": 0.8, "margin2": 0.4}
        value, _ = ml.quadruplet_loss(x, labels, **options)
        assert value == pytest.approx(textbook.quadruplet_loss(x, labels, **options)[0], rel=1e-12)
        check_grad(lambda e, options=options: ml.quadruplet_loss(e, labels, **options), x, rtol=1e-6)


# --- determinism, memory, plain Python -------------------------------------------------------------------------

_DETERMINISM_SCRIPT = """
import json, sys
import numpy as np
import metricloss as ml
from metricloss._kernels.numba import _jit
_jit.SERIAL_BELOW = 0  # the parallel kernels, at any size
_jit.THREADS = "parallel"
rng = np.random.default_rng(9)
x = rng.standard_normal((512, 16)).astype(np.float32)
out = {}
for name, labels in (("pk", np.repeat(np.arange(128), 4)), ("big", np.repeat(np.arange(4), 128))):
    for adaptive_margins in (False, True):
        value, grad = ml.quadruplet_loss(x, labels, adaptive_margins=adaptive_margins, margin2=8.0)
        out[f"{adaptive_margins}-{name}"] = [value.hex(), grad.tobytes().hex()]
json.dump(out, sys.stdout)
"""


def test_results_are_bitwise_equal_with_one_and_two_numba_threads():
    one_thread, two_threads = results_with_one_and_two_numba_threads(_DETERMINISM_SCRIPT)
    assert one_thread == two_threads


@pytest.mark.parametrize("adaptive_margins", [False, True])
@pytest.mark.parametrize("distance", ml.SYMMETRIC_DISTANCES)
def test_peak_memory_is_a_few_distance_matrices_not_b_cubed(adaptive_margins, distance):
    """P×K at B = 768: a B³ float32 array would be 1.8 GB and the B⁴ quadruplets far more; the loss stays within
    4 B×B matrices (the distances, the two terms' cotangents, the cosine VJP's)."""
    n, features = 768, 32
    x, labels = pk_batch(np.random.default_rng(10), n // 4, 4, features, np.float32)
    options = {"adaptive_margins": adaptive_margins, "distance": distance}
    ml.quadruplet_loss(x[:8], labels[:8], **options)  # compile outside the measurement
    tracemalloc.start()
    ml.quadruplet_loss(x, labels, **options)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 4 * n * n * x.itemsize, f"peak {peak / 2**20:.1f} MiB"


def test_peak_memory_with_large_classes_is_still_a_few_distance_matrices():
    """Two classes of B/2: B²/4 positive pairs, whose thresholds and counts the kernel keeps; still O(B²)."""
    n, features = 1024, 16
    x, labels = pk_batch(np.random.default_rng(11), 2, n // 2, features, np.float32)
    ml.quadruplet_loss(x[:8], labels[:8])
    tracemalloc.start()
    ml.quadruplet_loss(x, labels, adaptive_margins=True, distance="cosine")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 8 * n * n * x.itemsize, f"peak {peak / 2**20:.1f} MiB"


_PURE_PYTHON_SCRIPT = """
import warnings
import numpy as np
import metricloss as ml
warnings.simplefilter("error")
rng = np.random.default_rng(12)
for labels in (np.repeat(np.arange(6), 5), np.repeat(np.arange(3), 10)):  # the sweep, and the binary search
    x = 2.0 * rng.standard_normal((6, 3))[labels] + rng.standard_normal((30, 3))  # adaptive margins > 0
    x[5] = x[4]  # a duplicate: distance 0 in the divisions
    for adaptive_margins in (False, True):
        for distance in ml.SYMMETRIC_DISTANCES:
            options = {"adaptive_margins": adaptive_margins, "distance": distance, "margin2": 0.7}
            value, grad = ml.quadruplet_loss(x, labels, backend="numba", **options)
            reference_value, reference_grad = ml.quadruplet_loss(x, labels, backend="numpy", **options)
            assert abs(value - reference_value) <= 1e-12 * abs(reference_value), (adaptive_margins, distance)
            assert np.allclose(grad, reference_grad, rtol=1e-12, atol=1e-14), (adaptive_margins, distance)
print("ok")
"""


def test_the_numba_kernels_are_valid_python_under_numba_disable_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run([sys.executable, "-c", _PURE_PYTHON_SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
