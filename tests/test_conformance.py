"""metricloss.conformance: the checker run against the real installed references (torch.nn, pytorch-metric-learning,
JAX and TensorFlow functions), the known divergences it finds, deliberately broken candidates each caught and named,
identify() recovering the reference-library configurations of the docstrings' Notes, and the command."""

import functools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from support import lp, pml_dot

import metricloss as ml
from metricloss import conformance, testing
from metricloss.conformance import KINDS, SEARCH_SPACES, _search_space, bank, check, identify, main


def kinds(report):
    """{case name: kind} for the cases that do not simply agree."""
    return {o.case.name: o.kind for o in report.outcomes if o.kind != "agrees"}


# --- the bank --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    ["triplet_loss", "contrastive_loss", "triplet_margin_loss", "cosine_embedding_loss", "margin_ranking_loss"],
)
def test_the_bank_is_seeded_described_and_valid_for_the_reference(reference):
    """Every case has a unique name and a description, the same seed gives the same arrays, float32 and float64 both
    occur, and metricloss itself returns a finite value on every case (so the checker of metricloss agrees)."""
    first, again = bank(reference, seed=3), bank(reference, seed=3)
    assert len({c.name for c in first}) == len(first) and all(c.description for c in first)
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a.args, b.args, strict=True):
            np.testing.assert_array_equal(x, y)
    assert {c.dtype for c in first} == {np.dtype(np.float32), np.dtype(np.float64)}
    assert any(c.convention == "kink" for c in first)
    report = check(getattr(ml, reference), reference, references=True)
    assert report.agrees and report.counts["agrees"] == len(report.outcomes)


def test_the_batch_bank_holds_the_cases_that_break_losses():
    names = {c.name for c in bank("triplet_loss")}
    for expected in (
        "duplicated rows",
        "lone sample",
        "one class",
        "all distinct classes",
        "anchors without positive",
        "all-zero rows",
        "norms ~1e-30",
        "norms ~1e+06",
        "ties",
        "at the kink",
        "references equal to queries",
        "query without negative",
    ):
        assert expected in names


# --- torch.nn ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "reference", "settings", "conventions"),
    [
        (torch.nn.CosineEmbeddingLoss(), "cosine_embedding_loss", {}, {"at the kink"}),
        (torch.nn.CosineEmbeddingLoss(margin=-0.3), "cosine_embedding_loss", {"margin": -0.3}, set()),
        (torch.nn.MarginRankingLoss(), "margin_ranking_loss", {}, {"at the kink", "equal scores"}),
        (torch.nn.HingeEmbeddingLoss(margin=2.0), "hinge_embedding_loss", {"margin": 2.0}, {"at the kink"}),
        (torch.nn.TripletMarginLoss(eps=0.0), "triplet_margin_loss", {"eps": 0.0}, {"at the kink"}),
        (torch.nn.TripletMarginLoss(p=1), "triplet_margin_loss", {"p": 1}, {"at the kink"}),
    ],
)
def test_torch_losses_agree_under_the_documented_settings_except_at_the_kink(module, reference, settings, conventions):
    """torch's clamp passes the gradient at a hinge of exactly 0 (metricloss's is 0): reported as a convention."""
    report = check(module, reference, **settings)
    assert report.framework == "torch"
    assert report.agrees, report.table()
    assert {name for name, kind in kinds(report).items() if kind == "convention"} == conventions


def test_torch_triplet_margin_eps_inside_the_norm_is_found_against_the_exact_distance():
    """torch's default ε = 1e-6 is added to the difference before the norm: against eps=0 identical rows (distance
    ε√F for torch, 0 here) and the random rows' values differ."""
    report = check(torch.nn.TripletMarginLoss(), "triplet_margin_loss", eps=0.0)
    assert not report.agrees
    found = kinds(report)
    assert found["random rows"] == "value"
    assert found["identical rows, float32"] == "gradient"


def test_torch_swap_ties_appear_where_eps_dominates_the_differences():
    """With swap=True torch splits the gradient where d(p, n) = d(a, n); rows 1e-30 apart are all ε apart, so every
    row is such a tie: the bank finds it outside the case built for it."""
    report = check(torch.nn.TripletMarginLoss(swap=True), "triplet_margin_loss", swap=True)
    assert kinds(report).get("norms ~1e-30") == "gradient"


# --- pytorch-metric-learning ------------------------------------------------------------------------------------


def test_pml_contrastive_loss_agrees_with_its_documented_settings():
    report = check(
        pml_losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.8, distance=lp()),
        "contrastive_loss",
        form="linear",
        pos_margin=0.1,
        margin=0.8,
        reduction="mean_nonzero",
        split_reduction=True,
    )
    assert report.agrees and kinds(report) == {}, report.table()


def test_pml_batch_hard_agrees_everywhere_including_references():
    candidate = (pml_losses.TripletMarginLoss(margin=0.5, distance=lp()), pml_miners.BatchHardMiner(distance=lp()))
    report = check(candidate, "triplet_loss", mining="hard", margin=0.5, reduction="mean_nonzero")
    assert "references equal to queries" in {o.case.name for o in report.outcomes}
    assert report.agrees and kinds(report) == {}, report.table()


def test_pml_identity_exclusion_is_found_on_references_equal_to_queries():
    """PML drops the pairs (i, i) when ref_labels *is* labels (its issue #488); metricloss counts them."""
    report = check(pml_losses.TripletMarginLoss(margin=1.0, distance=lp()), "triplet_loss")
    assert kinds(report) == {"references equal to queries": "value"}
    assert report.summary()["value"]["smallest_case"] == "references equal to queries"
    shrunk = report.shrunk["value"]  # two queries of two classes, passed again as the references, still differ
    assert len(shrunk.args[0]) == 2 and shrunk.kwargs["ref_embeddings"] is shrunk.args[0]
    assert "shrunk to 2 rows" in report.table()


def test_pml_semihard_miner_differs_only_at_exact_ties():
    """PML's semi-hard band is d_ap < d_an <= d_ap + m, metricloss's d_ap <= d_an < d_ap + m: zero distances
    (duplicated rows, zero rows of different classes) and the identity exclusion are where they part."""
    miner = pml_miners.TripletMarginMiner(margin=0.6, type_of_triplets="semihard", distance=lp())
    report = check(
        (pml_losses.TripletMarginLoss(margin=0.6, distance=lp()), miner),
        "triplet_loss",
        mining="all_semihard",
        margin=0.6,
    )
    assert kinds(report) == {
        "duplicated rows": "value",
        "duplicated rows, float32": "value",
        "all-zero rows": "value",
        "references equal to queries": "value",
    }


# --- JAX and TensorFlow candidates ------------------------------------------------------------------------------


def test_a_jax_function_is_differentiated_by_jax_in_float64():
    jnp = pytest.importorskip("jax.numpy")

    def jax_hinge_embedding(x, y):
        return jnp.mean(jnp.where(y == 1, x, jnp.maximum(1.0 - x, 0.0)))

    report = check(jax_hinge_embedding, "hinge_embedding_loss")
    assert report.framework == "jax"
    assert report.agrees, report.table()
    assert max(o.error for o in report.outcomes if o.case.dtype == np.float64 and o.kind == "agrees") < 1e-12


def test_a_tensorflow_function_is_differentiated_by_its_gradient_tape():
    tf = pytest.importorskip("tensorflow")

    def tf_margin_ranking(x1, x2, y):
        return tf.reduce_mean(tf.maximum(-y * (x1 - x2) + 0.5, 0.0))

    report = check(tf_margin_ranking, "margin_ranking_loss", margin=0.5)
    assert report.framework == "tensorflow"
    assert report.agrees, report.table()


@pytest.mark.parametrize("adapter", ["torch", "jax", "tensorflow"])
def test_metricloss_wrapped_by_each_adapter_agrees_with_itself(adapter):
    """The adapters' wrap(loss) as a candidate: detected as that framework and differentiated by it, references
    included (a query-vs-reference batch passes ref_embeddings= through the wrapped function)."""
    module = pytest.importorskip(f"metricloss.adapters.{adapter}")
    candidate = module.wrap(ml.triplet_loss, mining="hard", margin=0.5)
    report = check(candidate, "triplet_loss", mining="hard", margin=0.5, references=True)
    assert report.framework == adapter
    assert report.agrees and kinds(report) == {}, report.table()


# --- broken candidates ------------------------------------------------------------------------------------------


def _hard(x, labels, **kw):
    return ml.triplet_loss(x, labels, mining="hard", **kw)


def wrong_sign(x, labels):
    value, grad = _hard(x, labels)
    return value, -grad


def missing_factor_two(x1, x2, y):
    """The 'squared' contrastive form (TF-Addons') without its factor: half of it."""
    value, (g1, g2) = ml.contrastive_pair_loss(x1, x2, y, form="squared")
    return value / 2, (g1 / 2, g2 / 2)


def dropped_reduction(x, labels):
    return _hard(x, labels, reduction="sum")


def nan_on_ties(x, labels):
    value, grad = _hard(x, labels)
    if len(np.unique(x, axis=0)) < len(x):  # d = 0 somewhere: a gradient of √d at 0
        return value, np.full_like(grad, np.nan)
    return value, grad


@pytest.mark.parametrize(
    ("candidate", "reference", "kind", "case"),
    [
        (wrong_sign, "triplet_loss", "gradient", "random P×K"),
        (missing_factor_two, "contrastive_pair_loss", "value", "random rows"),
        (dropped_reduction, "triplet_loss", "value", "random P×K"),
        (nan_on_ties, "triplet_loss", "nonfinite", "duplicated rows"),
    ],
    ids=["wrong sign", "missing factor 2", "dropped reduction", "NaN on ties"],
)
def test_a_broken_candidate_is_caught_and_named(candidate, reference, kind, case):
    settings = {"form": "squared"} if reference == "contrastive_pair_loss" else {"mining": "hard"}
    report = check(candidate, reference, **settings)
    assert report.framework == "numpy"
    assert not report.agrees
    assert kinds(report)[case] == kind
    assert kind in report.table() and case in report.table()
    shrunk = report.shrunk[kind]
    assert shrunk.size <= min(o.case.size for o in report.outcomes if o.kind == kind)
    if kind == "nonfinite":  # what is left still holds a duplicated row
        x = shrunk.args[0]
        assert len(np.unique(x, axis=0)) < len(x)


def test_a_candidate_that_raises_is_reported_not_propagated():
    def refuses_singletons(x, labels):
        if np.min(np.unique(labels, return_counts=True)[1]) < 2:
            raise ValueError("every class needs two samples")
        return _hard(x, labels)

    report = check(refuses_singletons, "triplet_loss", mining="hard")
    assert kinds(report)["lone sample"] == "raises"
    assert "every class needs two samples" in next(o.detail for o in report.outcomes if o.case.name == "lone sample")


def test_the_report_separates_every_kind_and_serialises():
    report = check(wrong_sign, "triplet_loss", mining="hard")
    data = json.loads(json.dumps(report.to_json()))
    assert set(data["counts"]) == set(KINDS)
    assert data["agrees"] is False and len(data["cases"]) == len(report.outcomes)
    assert all(case["description"] for case in data["cases"])


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="reference must be the name of a metricloss loss"):
        check(wrong_sign, "batch_hard_loss")
    with pytest.raises(TypeError, match="triplet_loss has no such setting"):
        check(wrong_sign, "triplet_loss", minning="hard")
    with pytest.raises(ValueError, match="framework must be one of 'numpy', 'torch', 'jax', 'tensorflow'"):
        check(wrong_sign, "triplet_loss", framework="mxnet")
    with pytest.raises(TypeError, match="candidate must be callable"):
        check(42, "triplet_loss")
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        check(wrong_sign, "triplet_loss", dtype="float16")


# --- identify ---------------------------------------------------------------------------------------------------

# The differences the bank finds between PML's losses on cosine similarities and metricloss's: PML's
# CosineSimilarity normalises by max(‖x‖, 1e-12), so a zero row's gradient is huge and rows of norm 1e-30 are no
# longer directions (metricloss: gradient 0 at a zero row, a 1e-30 row a direction; the kink case holds a zero row),
# and its identity exclusion of references equal to the queries (#488).
_PML_COSINE = ["all-zero rows", "norms ~1e-30", "at the kink", "references equal to queries"]


def pml_triplet_center(margin):
    """The triplet-center loss in PML as its Notes give it: TripletMarginLoss after BatchHardMiner, both on squared
    Euclidean distances, against the batch's class means (computed in torch, so autograd goes through them)."""
    loss = pml_losses.TripletMarginLoss(margin=margin, distance=lp(power=2))
    miner = pml_miners.BatchHardMiner(distance=lp(power=2))

    def pml_batch_centres(embeddings, labels):
        classes = torch.unique(labels)
        means = torch.stack([embeddings[labels == c].mean(dim=0) for c in classes])
        return loss(embeddings, labels, miner(embeddings, labels, means, classes), means, classes)

    return pml_batch_centres


@pytest.mark.parametrize(
    ("candidate", "family", "expected", "differs_on"),
    [
        (
            lambda: pml_losses.TripletMarginLoss(margin=0.2, distance=lp()),
            "triplet_loss",
            {"mining": "all", "reduction": "mean_nonzero", "distance": "euclidean", "margin": 0.2},
            ["references equal to queries"],
        ),
        (
            lambda: pml_losses.TripletMarginLoss(margin=0.5, distance=lp(power=2)),
            "triplet_loss",
            {"mining": "all", "distance": "sqeuclidean", "margin": 0.5},
            ["references equal to queries"],
        ),
        (
            lambda: (pml_losses.TripletMarginLoss(margin=0.2, distance=lp()), pml_miners.BatchHardMiner(distance=lp())),
            "triplet_loss",
            {"mining": "hard", "reduction": "mean_nonzero", "incomplete_anchors": "drop", "soft": False, "margin": 0.2},
            [],
        ),
        (
            lambda: (
                pml_losses.TripletMarginLoss(margin=0.2, smooth_loss=True, distance=lp()),
                pml_miners.BatchHardMiner(distance=lp()),
            ),
            "triplet_loss",
            {"mining": "hard", "soft": True, "margin": 0.2},
            [],
        ),
        (
            lambda: pml_losses.TripletMarginLoss(margin=0.2, smooth_loss=True, distance=lp()),
            "triplet_loss",
            {"mining": "all", "soft": True, "margin": 0.2},
            ["references equal to queries"],
        ),
        (
            lambda: (
                pml_losses.TripletMarginLoss(margin=0.2, distance=lp()),
                pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=lp()),
            ),
            "triplet_loss",
            {"mining": "all_semihard", "margin": 0.2, "reduction": "mean_nonzero"},
            # the kink case (built for the default margin 1) has a negative at exactly the positive's distance,
            # d_an = d_ap = 1: metricloss's band d_ap <= d_an < d_ap + m mines it (value 0.2), PML's
            # d_ap < d_an <= d_ap + m does not (0). A value that differs is a disagreement, never a convention.
            [
                "duplicated rows",
                "duplicated rows, float32",
                "all-zero rows",
                "at the kink",
                "references equal to queries",
            ],
        ),
        (
            lambda: pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5, distance=lp()),
            "contrastive_loss",
            {"form": "linear", "reduction": "mean_nonzero", "split_reduction": True, "margin": 0.5},
            [],
        ),
        (
            lambda: torch.nn.TripletMarginLoss(margin=0.5, p=1),
            "triplet_margin_loss",
            {"p": 1, "eps": 1e-6, "swap": False, "margin": 0.5, "reduction": "mean"},
            [],
        ),
        (
            lambda: torch.nn.CosineEmbeddingLoss(margin=0.2, reduction="sum"),
            "cosine_embedding_loss",
            {"margin": 0.2, "reduction": "sum"},
            [],
        ),
        (
            lambda: torch.nn.MarginRankingLoss(margin=0.5),
            "margin_ranking_loss",
            {"margin": 0.5, "reduction": "mean"},
            [],
        ),
        (
            lambda: pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5),
            "multi_similarity_loss",
            {
                "mining": "all",
                "similarity": "cosine",
                "reduction": "mean",
                "positive_scale": 2.0,
                "negative_scale": 50.0,
                "threshold": 0.5,
            },
            _PML_COSINE,
        ),
        (
            lambda: (
                pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5),
                pml_miners.MultiSimilarityMiner(epsilon=0.1),
            ),
            "multi_similarity_loss",
            {"mining": "epsilon", "epsilon": 0.1, "similarity": "cosine", "reduction": "mean", "negative_scale": 50.0},
            _PML_COSINE,
        ),
        (
            lambda: pml_losses.MultiSimilarityLoss(
                alpha=2, beta=40, base=1.0, distance=pml_dot(), reducer=pml_reducers.SumReducer()
            ),
            "multi_similarity_loss",
            {"mining": "all", "similarity": "dot", "reduction": "sum", "negative_scale": 40.0, "threshold": 1.0},
            ["references equal to queries"],
        ),
        (
            lambda: pml_losses.CircleLoss(m=0.4, gamma=80),
            "circle_loss",
            {"form": "per_anchor", "detach_weights": True, "reduction": "mean_nonzero", "margin": 0.4, "scale": 80.0},
            _PML_COSINE,
        ),
        (
            lambda: pml_losses.CircleLoss(m=0.25, gamma=256, reducer=pml_reducers.MeanReducer()),
            "circle_loss",
            {"form": "per_anchor", "reduction": "mean", "margin": 0.25, "scale": 256.0},
            _PML_COSINE,
        ),
        (
            lambda: pml_losses.NTXentLoss(temperature=0.07),
            "ntxent_loss",
            {"temperature": 0.07, "similarity": "cosine", "reduction": "mean"},
            _PML_COSINE,
        ),
        (  # PML's log(ratio + tiny) saturates where a pair's probability underflows: the large norms
            lambda: pml_losses.NTXentLoss(temperature=0.5, distance=pml_dot()),
            "ntxent_loss",
            {"temperature": 0.5, "similarity": "dot", "reduction": "mean"},
            ["norms ~1000", "norms ~1e+06", "norms ~1e+06, float32", "references equal to queries"],
        ),
        (  # PML returns 0 for a batch of one class
            lambda: pml_losses.SupConLoss(temperature=0.1),
            "supcon_loss",
            {"temperature": 0.1, "similarity": "cosine", "reduction": "mean_nonzero"},
            ["one class", *_PML_COSINE],
        ),
        (
            lambda: pml_losses.SupConLoss(temperature=0.07, distance=pml_dot()),
            "supcon_loss",
            {"temperature": 0.07, "similarity": "dot", "reduction": "mean_nonzero"},
            ["one class", "references equal to queries"],
        ),
        (  # with ref_emb= PML takes a pair's negatives from query rows i and j
            lambda: pml_losses.LiftedStructureLoss(neg_margin=1, pos_margin=0, distance=lp()),
            "lifted_structure_loss",
            {"distance": "euclidean", "reduction": "mean", "margin": 1.0},
            ["query-vs-reference", "references equal to queries", "query without negative"],
        ),
        (
            lambda: pml_losses.LiftedStructureLoss(
                neg_margin=0.5, pos_margin=0, distance=lp(power=2), reducer=pml_reducers.AvgNonZeroReducer()
            ),
            "lifted_structure_loss",
            {"distance": "sqeuclidean", "reduction": "mean_nonzero", "margin": 0.5},
            ["query-vs-reference", "references equal to queries", "query without negative"],
        ),
        (
            lambda: pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1, pos_margin=0, distance=lp()),
            "generalized_lifted_structure_loss",
            {"incomplete_anchors": "keep", "distance": "euclidean", "reduction": "mean", "margin": 1.0},
            ["references equal to queries"],
        ),
        (  # PML's β is a float32 tensor: see test_identify_finds_pml_margin_loss_beta_in_float32
            lambda: pml_losses.MarginLoss(margin=0.2, beta=1.2, distance=lp()),
            "margin_loss",
            {"distance": "euclidean", "reduction": "mean_nonzero", "margin": 0.2, "beta": 1.2},
            ["at the kink"],
        ),
        (
            lambda: pml_losses.NPairsLoss(distance=pml_dot()),
            "npair_loss",
            {"similarity": "dot", "reduction": "mean"},
            [],
        ),
        (
            lambda: pml_losses.NPairsLoss(distance=pml_dot(), reducer=pml_reducers.SumReducer()),
            "npair_loss",
            {"similarity": "dot", "reduction": "sum"},
            [],
        ),
        (
            lambda: pml_losses.NPairsLoss(),  # its default DotProductSimilarity() normalises: the cosine
            "npair_loss",
            {"similarity": "cosine", "reduction": "mean"},
            ["all-zero rows", "norms ~1e-30", "ties"],  # F.normalize's eps: the ties case's first anchor is 0
        ),
        (
            lambda: pml_triplet_center(0.5),
            "triplet_center_loss",
            {"distance": "sqeuclidean", "halved": False, "reduction": "mean_nonzero", "margin": 0.5},
            [],
        ),
    ],
    ids=[
        "pml-triplet",
        "pml-triplet-power2",
        "pml-batch-hard",
        "pml-smooth-batch-hard",
        "pml-smooth-all-triplets",
        "pml-semihard-miner",
        "pml-contrastive",
        "torch-triplet-margin",
        "torch-cosine",
        "torch-margin-ranking",
        "pml-multi-similarity",
        "pml-multi-similarity-miner",
        "pml-multi-similarity-dot-sum",
        "pml-circle",
        "pml-circle-mean",
        "pml-ntxent",
        "pml-ntxent-dot",
        "pml-supcon",
        "pml-supcon-dot",
        "pml-lifted",
        "pml-lifted-squared-nonzero",
        "pml-generalized-lifted",
        "pml-margin",
        "pml-npairs",
        "pml-npairs-sum",
        "pml-npairs-default-cosine",
        "pml-triplet-center",
    ],
)
def test_identify_recovers_the_settings_the_notes_document(candidate, family, expected, differs_on):
    found = identify(candidate(), family)
    assert found.matches, str(found)
    # the first match, or one that ties with it (mean and mean_nonzero coincide where every term is > 0)
    best = next((m for m in found.matches if {k: m.settings[k] for k in expected} == expected), None)
    assert best is not None, str(found)
    assert best.differing() == differs_on
    assert "your loss is " + family in str(found)


def test_identify_maps_pml_cosine_similarity_margins_with_a_negative_pos_margin():
    """PML's ContrastiveLoss on cosine similarity with pos_margin above 1: given pos_margin = 1 − 1.2, identify
    finds the rest, and the bank finds the two known differences, PML's ε in its normalisation (zero and tiny
    rows) and its identity exclusion of references equal to the queries (#488)."""
    from pytorch_metric_learning import distances as pml_distances

    candidate = pml_losses.ContrastiveLoss(pos_margin=1.2, neg_margin=0.5, distance=pml_distances.CosineSimilarity())
    found = identify(candidate, "contrastive_loss", pos_margin=1 - 1.2)
    expected = {"form": "linear", "distance": "cosine", "split_reduction": True, "margin": 0.5}
    assert {k: found.settings[k] for k in expected} == expected, str(found)
    assert found.matches[0].differing() == ["all-zero rows", "norms ~1e-30", "references equal to queries"]


def test_identify_finds_pml_margin_loss_beta_in_float32():
    """PML keeps β in a float32 tensor (torch.tensor([float(beta)]), cast to the embeddings' dtype after): 1.2 is
    1.2000000477 there, which moves each active pair term by 4.8e-8 (up on negative pairs, down on positive
    ones), past the float64 tolerance on the kink case's batch, whose one active term is 0.4. With β fixed at
    float32(1.2) PML agrees on every case, and a β exact in float32 is found on every case from the grid."""
    candidate = pml_losses.MarginLoss(margin=0.2, beta=1.2, distance=lp())
    beta32 = float(np.float32(1.2))
    found = identify(candidate, "margin_loss", beta=beta32)
    assert found.settings == {"distance": "euclidean", "reduction": "mean_nonzero", "margin": 0.2, "beta": beta32}
    assert found.matches[0].differing() == []
    exact = identify(pml_losses.MarginLoss(margin=0.2, beta=1.0, distance=lp()), "margin_loss")
    assert exact.settings["beta"] == 1.0 and exact.matches[0].differing() == []


@pytest.mark.parametrize(
    ("candidate", "family", "fixed", "expected"),
    [
        (
            lambda: pml_losses.CircleLoss(m=0.3, gamma=64),
            "circle_loss",
            {"margin": 0.3, "scale": 64.0},
            {"form": "per_anchor", "detach_weights": True, "reduction": "mean_nonzero"},
        ),
        (
            lambda: pml_losses.NTXentLoss(temperature=0.3, distance=pml_dot()),
            "ntxent_loss",
            {"temperature": 0.3},
            {"similarity": "dot", "reduction": "mean"},
        ),
        (
            lambda: pml_losses.MultiSimilarityLoss(alpha=3, beta=30, base=0.6, distance=pml_dot()),
            "multi_similarity_loss",
            {"positive_scale": 3.0, "negative_scale": 30.0, "threshold": 0.6},
            {"mining": "all", "similarity": "dot"},
        ),
    ],
    ids=["circle", "ntxent", "multi-similarity"],
)
def test_identify_takes_off_grid_hyper_parameters_as_fixed(candidate, family, fixed, expected):
    """Values off the grid are not found by the search (no match), and found with the rest when fixed."""
    assert identify(candidate(), family).matches == []
    found = identify(candidate(), family, **fixed)
    assert found.matches, str(found)
    assert {k: found.settings[k] for k in {**expected, **fixed}} == {**expected, **fixed}


def _margin_loss_beta_held_constant(embeddings, labels, **settings):
    """margin_loss with its β given but held constant, as a candidate that learns no β: its gradient dropped."""
    value, (grad, _, *grad_refs) = ml.margin_loss(embeddings, labels, **settings)
    return value, (grad, *grad_refs) if grad_refs else grad


# A point of each new family's search space away from its defaults.
_AWAY_FROM_DEFAULTS = [
    (
        "multi_similarity_loss",
        {
            "mining": "epsilon",
            "epsilon": 0.1,
            "similarity": "dot",
            "reduction": "mean_nonzero",
            "positive_scale": 2.0,
            "negative_scale": 40.0,
            "threshold": 1.0,
        },
    ),
    ("circle_loss", {"form": "all_pairs", "detach_weights": False, "margin": 0.4, "scale": 128.0}),
    ("ntxent_loss", {"temperature": 0.2, "similarity": "dot", "reduction": "sum"}),
    ("supcon_loss", {"temperature": 0.5, "similarity": "cosine", "reduction": "sum"}),
    ("lifted_structure_loss", {"distance": "cosine", "reduction": "sum", "margin": 0.5}),
    (
        "generalized_lifted_structure_loss",
        {"incomplete_anchors": "drop", "distance": "sqeuclidean", "reduction": "mean_nonzero", "margin": 0.1},
    ),
    ("margin_loss", {"distance": "sqeuclidean", "reduction": "sum", "margin": 0.1, "beta": 1.0}),
    ("npair_loss", {"similarity": "cosine", "reduction": "sum"}),
    ("triplet_center_loss", {"distance": "cosine", "halved": True, "reduction": "mean", "margin": 0.2}),
]


@pytest.mark.parametrize(("family", "settings"), _AWAY_FROM_DEFAULTS, ids=[f for f, _ in _AWAY_FROM_DEFAULTS])
def test_identify_tells_apart_the_options_of_each_family(family, settings):
    """metricloss's own loss at settings away from the defaults is identified as exactly those settings, alone
    and on every case: the bank separates each option searched (the reference-code forms too: circle's all_pairs
    without .detach())."""
    if family == "margin_loss":
        candidate = functools.partial(_margin_loss_beta_held_constant, **settings)
    else:
        candidate = functools.partial(getattr(ml, family), **settings)
    found = identify(candidate, family)
    assert [m.settings for m in found.matches] == [settings], str(found)
    assert found.matches[0].differing() == []


def test_every_search_space_holds_settings_its_loss_accepts():
    """Each family of SEARCH_SPACES is a reference the checker calls, its identify docstring names it, and every
    setting it searches is accepted by the loss (a finite value on the bank's first batch)."""
    for family in SEARCH_SPACES:
        assert f"``{family}``" in identify.__doc__
        case = bank(family)[0]
        for settings in _search_space(family):
            value, _ = getattr(ml, family)(*case.args, **settings)
            assert math.isfinite(value), (family, settings)


def test_identify_refuses_a_family_without_options_and_lists_those_it_knows():
    with pytest.raises(ValueError, match="identify knows the options of triplet_loss, ") as error:
        identify(wrong_sign, "quadruplet_loss")
    assert all(family in str(error.value) for family in SEARCH_SPACES)


def test_npair_loss_is_checked_as_a_batch_loss():
    """npair_loss is called (embeddings, labels) like every batch loss, and gets no query-vs-reference case
    (npair_loss takes none)."""
    report = check(ml.npair_loss, "npair_loss", references=True)
    assert report.agrees and kinds(report) == {}, report.table()
    assert "query-vs-reference" not in {o.case.name for o in report.outcomes}
    assert report.arg_names == ("embeddings", "labels")


@pytest.mark.parametrize(
    ("distance", "differs_on"),
    [
        # PML's SNRDistance divides by the anchor's variance: a constant row (a zero row here, in both cases) gives
        # it NaN gradients, where metricloss's convention is d = 1 with no gradient. The kink case's first row is
        # zero too, and there the values differ (PML 0, metricloss 0.1): a value disagreement, never a convention.
        ("snr", ["all-zero rows", "ties", "at the kink"]),
        ("dot", ["references equal to queries"]),  # PML's identity exclusion (#488)
    ],
)
def test_identify_finds_the_dot_and_snr_distances_of_pml_batch_hard(distance, differs_on):
    from pytorch_metric_learning import distances as pml_distances

    pml_distance = pml_dot() if distance == "dot" else pml_distances.SNRDistance(normalize_embeddings=False)
    candidate = (
        pml_losses.TripletMarginLoss(margin=0.2, distance=pml_distance),
        pml_miners.BatchHardMiner(distance=pml_distance),
    )
    found = identify(candidate, "triplet_loss")
    expected = {"mining": "hard", "soft": False, "distance": distance, "margin": 0.2}
    assert {k: found.settings[k] for k in expected} == expected, str(found)
    assert found.matches[0].differing() == differs_on


def test_identify_says_when_nothing_reproduces_the_candidate():
    """PML's swap=True (the negative distance min(d_an, d_pn), Balntas et al.) on all triplets has no metricloss
    equivalent among triplet_loss's options (only triplet_margin_loss on explicit rows has swap)."""
    found = identify(pml_losses.TripletMarginLoss(margin=0.2, swap=True, distance=lp()), "triplet_loss")
    assert found.matches == [] and found.settings is None
    assert "no settings of triplet_loss" in str(found)


# --- the command --------------------------------------------------------------------------------------------------

_CANDIDATES = """
import torch
from pytorch_metric_learning import distances, losses, miners

lp = distances.LpDistance(normalize_embeddings=False)
batch_hard = (losses.TripletMarginLoss(margin=0.5, distance=lp), miners.BatchHardMiner(distance=lp))
plain = losses.TripletMarginLoss(margin=0.5, distance=lp)
"""


def _command(tmp_path, *args):
    module = tmp_path / "candidates.py"
    module.write_text(_CANDIDATES)
    return subprocess.run(
        [sys.executable, "-m", "metricloss.conformance", f"{module}:{args[0]}", *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_prints_a_table_and_exits_by_the_verdict(tmp_path):
    agrees = _command(
        tmp_path,
        "batch_hard",
        "--against",
        "triplet_loss",
        "--mining",
        "hard",
        "--margin",
        "0.5",
        "--reduction",
        "mean_nonzero",
    )
    assert agrees.returncode == 0, agrees.stderr
    assert "AGREES" in agrees.stdout and "duplicated rows" in agrees.stdout
    differs = _command(tmp_path, "plain", "--against", "triplet_loss", "--margin=0.5", "--json")
    assert differs.returncode == 1, differs.stderr
    data = json.loads(differs.stdout)
    assert data["agrees"] is False and data["settings"] == {"margin": 0.5}
    assert [c["name"] for c in data["cases"] if c["kind"] == "value"] == ["references equal to queries"]


def test_the_command_refuses_a_bad_setting_with_status_2(tmp_path):
    run = _command(tmp_path, "plain", "--against", "triplet_loss", "--minning", "hard")
    assert run.returncode == 2 and "minning" in run.stderr


def test_the_command_identifies_settings_as_json(tmp_path, capsys):
    """--identify --json, in process: the settings of PML's batch-hard configuration, exit status 0."""
    module = tmp_path / "candidates.py"
    module.write_text(_CANDIDATES)
    status = main([f"{module}:batch_hard", "--against", "triplet_loss", "--identify", "--json", "--margin", "0.5"])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    best = data["matches"][0]
    assert best["differs_on"] == []
    assert {k: best["settings"][k] for k in ("mining", "reduction", "margin")} == {
        "mining": "hard",
        "reduction": "mean_nonzero",
        "margin": 0.5,
    }


def test_other_batch_losses_are_checked_without_conventions():
    """A batch loss without a hinge at the margin (multi-similarity) is checked on the same bank, its kink and tie
    cases plain cases; PML's MultiSimilarityLoss agrees on the random batches."""
    report = check(
        pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5),
        "multi_similarity_loss",
        positive_scale=2.0,
        negative_scale=50.0,
        threshold=0.5,
    )
    assert report.counts["convention"] == 0
    assert all(o.kind == "agrees" for o in report.outcomes if o.case.name.startswith("random"))


def test_the_tolerances_are_the_testing_table():
    """One tolerance table (issue 22): conformance keeps none of its own; its report reads metricloss.testing's."""
    assert not hasattr(conformance, "TOLERANCES")
    assert conformance.CONFORMANCE_TOLERANCES is testing.CONFORMANCE_TOLERANCES
    assert conformance.CONFORMANCE_FLOORS is testing.CONFORMANCE_FLOORS


def test_a_value_that_differs_at_a_kink_is_a_value_disagreement_not_a_convention():
    """A hinge is continuous and tied candidates give one value, so only a slope may differ at a convention. A
    batch-hard loss that keeps the anchors without positives (as TF-Addons does), checked against the reference
    that drops them, differs in value on the kink case (whose two singleton classes are such anchors): reported as
    a value disagreement. Where metricloss's value is exactly 0 (one class: no negative anywhere) the error is the
    absolute difference, marked so, not a relative error against 0."""
    keeps = functools.partial(ml.triplet_loss, mining="hard", incomplete_anchors="keep")
    report = check(keeps, "triplet_loss", mining="hard", references=False)
    found = {o.case.name: o for o in report.outcomes}
    assert found["at the kink"].kind == "value" and found["at the kink"].case.convention == "kink"
    assert report.counts["convention"] == 0 and not report.agrees
    kink = found["at the kink"]
    assert not kink.absolute and kink.error == pytest.approx(0.5)  # the kept anchors double the value here
    one_class = found["one class"]
    assert one_class.kind == "value" and one_class.absolute
    assert one_class.error == pytest.approx(
        ml.triplet_loss(*one_class.case.args, mining="hard", incomplete_anchors="keep")[0]
    )
    table = report.table()
    assert "differs at a convention" not in table
    assert f"{one_class.error:.2g} abs" in table and "metricloss's being exactly 0" in table
    data = report.to_json()
    (row,) = [c for c in data["cases"] if c["name"] == "one class"]
    assert row["relative_error"] is None and row["absolute_difference"] == pytest.approx(one_class.error)
    assert data["summary"]["value"]["worst_absolute_difference"] == pytest.approx(one_class.error)


def test_a_gradient_that_differs_at_a_kink_is_still_a_convention():
    """The other side of the rule: torch's clamp passes the slope at a hinge of exactly 0 and metricloss does not;
    the values agree there, so the kink case is a convention, with its gradient error in the detail."""
    report = check(torch.nn.HingeEmbeddingLoss(margin=2.0), "hinge_embedding_loss", margin=2.0)
    (kink,) = [o for o in report.outcomes if o.case.name == "at the kink"]
    assert kink.kind == "convention" and "values agree; gradient" in kink.detail
