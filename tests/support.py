"""Helpers the parity and kernel tests share: pytorch-metric-learning's value and gradients, comparing two results
in a dtype's tolerance, P×K batches, and running a script under one and two Numba threads."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from metricloss.testing import TOLERANCES, assert_close

# torch and pytorch-metric-learning are imported where used: tests/test_warp.py also runs in the LightFM
# environment, which has neither.


def pml_value_and_grad(loss, x, labels, refs=None, ref_labels=None, *, miner=None):
    """PML's loss (after its miner, if any) and its autograd gradients, as NumPy: the gradient of the embeddings,
    or with references the tuple (grad_embeddings, grad_refs)."""
    import torch

    tensors = [torch.tensor(x, requires_grad=True)] + ([] if refs is None else [torch.tensor(refs, requires_grad=True)])
    target = torch.as_tensor(labels)
    ref_kwargs = {} if refs is None else {"ref_emb": tensors[1], "ref_labels": torch.as_tensor(ref_labels)}
    indices = None if miner is None else miner(tensors[0], target, **ref_kwargs)
    value = loss(tensors[0], target, indices, **ref_kwargs)
    value.backward()
    grads = tuple(t.grad.numpy() for t in tensors)
    return value.item(), grads if refs is not None else grads[0]


def lp(power=1):
    """PML's L_p distance without its default normalisation of the embeddings (metricloss never normalises)."""
    from pytorch_metric_learning import distances as pml_distances

    return pml_distances.LpDistance(normalize_embeddings=False, power=power)


def pml_dot():
    """PML's dot-product similarity without its default normalisation of the embeddings."""
    from pytorch_metric_learning import distances as pml_distances

    return pml_distances.DotProductSimilarity(normalize_embeddings=False)


def batch_with_a_singleton(rng, dtype, n=24, features=8, classes=6):
    """A batch with repeated classes and a singleton (an anchor without positives)."""
    x = rng.standard_normal((n, features)).astype(dtype)
    labels = rng.integers(0, classes, n)
    labels[-1] = 99
    return x, labels


def as_tuple(grad):
    return grad if isinstance(grad, tuple) else (grad,)


def assert_same(ours, theirs, dtype, scale=1.0):
    """Our (value, grad) equals ``scale`` times theirs within the dtype's tolerance, our gradients in ``dtype``."""
    (value, grads), (expected_value, expected_grads) = ours, theirs
    assert value == pytest.approx(scale * expected_value, rel=TOLERANCES[np.dtype(dtype)])
    for got, expected in zip(as_tuple(grads), as_tuple(expected_grads), strict=True):
        assert got.dtype == dtype
        assert_close(got, scale * expected)


def pk_batch(rng, dtype, p=6, k=4, features=8, scale=0.5):
    """``p`` classes × ``k`` samples of Gaussian embeddings, grouped by class."""
    return (scale * rng.standard_normal((p * k, features))).astype(dtype), np.repeat(np.arange(p), k)


def results_with_one_and_two_numba_threads(script):
    """What ``script`` prints (JSON) run with NUMBA_NUM_THREADS=1 and with 2, in fresh processes."""
    results = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(run.stdout))
    return results


MINED_PER_BATCH_IDS = ["margin-distance-weighted", "triplet-of-pairs"]


def mined_per_batch(dtype):
    """(loss, hyper-parameters, embeddings, labels, triplets) with index arrays mined for the batch, as a training
    loop passes them at each step: the margin loss's distance-weighted triplets (on unit rows), and the triplets of
    a pair miner's pairs for the triplet loss."""
    import metricloss as ml

    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 6)).astype(dtype)
    labels = np.repeat(np.arange(4), 4)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return [
        (ml.margin_loss, {}, unit, labels, ml.distance_weighted_negatives(unit, labels, rng=0)),
        (ml.triplet_loss, {"margin": 0.3}, x, labels, ml.pairs_to_triplets(*ml.mine_pairs(x, labels, kind="all"))),
    ]
