"""One vocabulary (metricloss/_vocabulary.py, docs/guide/vocabulary.md): every public loss's signature is held to
the tables — one meaning per parameter name, one calling form per kind of loss, the shared keywords in one order,
every default that differs between losses given its reason — and the words users bring from other libraries get
a TypeError naming the parameter that means them."""

import inspect
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import metricloss as ml
from metricloss import _vocabulary

LOSSES = {name: getattr(ml, name) for name in ml.__all__ if name.endswith("_loss")}
FORMS = {  # the calling forms: the first parameters of a loss, by kind
    "labelled batch": ("embeddings", "labels"),
    "explicit rows": ("anchors", "positives"),
    "pairs with a target": ("x1", "x2", "y"),
    "WARP": ("queries", "items", "relevance"),
    "WARP on scores": ("scores", "relevance"),
    "distances with a target": ("x", "y"),
}
ON_A_MATRIX = {"npair_pairs_loss", "multiple_negatives_ranking_loss"}  # besides every labelled-batch loss
# the shared keywords, in the order every signature gives them
KEYWORD_ORDER = (
    "mining",
    "margin",
    "distance",
    "similarity",
    "reduction",
    "split_reduction",
    "incomplete_anchors",
    "ref_embeddings",
    "ref_labels",
    "backend",
    "rng",
)
ROOT = Path(__file__).resolve().parents[1]


def _parameters(loss):
    return inspect.signature(loss).parameters


def _form(loss):
    names = tuple(_parameters(loss))
    return next((form for form, first in FORMS.items() if names[: len(first)] == first), None)


@pytest.mark.parametrize("name", LOSSES)
def test_every_parameter_has_its_one_meaning_in_the_table(name):
    unknown = set(_parameters(LOSSES[name])) - set(_vocabulary.MEANINGS)
    assert not unknown, f"{name} takes {sorted(unknown)}: give each its meaning in _vocabulary.MEANINGS"


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_has_one_of_the_calling_forms(name):
    assert _form(LOSSES[name]) is not None, f"{name}{inspect.signature(LOSSES[name])} starts like no calling form"


@pytest.mark.parametrize("name", LOSSES)
def test_arrays_are_positional_and_hyper_parameters_keyword_only(name):
    for parameter in _parameters(LOSSES[name]).values():
        positional = parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        array = parameter.name in _vocabulary.MEANINGS and parameter.name in _vocabulary.ARRAYS
        assert positional == (array and parameter.name not in ("ref_embeddings", "ref_labels")), (
            f"{name}: {parameter.name} is {parameter.kind.description}"
        )


LABELLED_BATCH = [name for name, loss in LOSSES.items() if _form(loss) == "labelled batch"]


@pytest.mark.parametrize("name", LABELLED_BATCH + sorted(ON_A_MATRIX))
def test_every_loss_on_a_matrix_takes_the_matrix_reduction_and_backend(name):
    parameters = _parameters(LOSSES[name])
    assert ("distance" in parameters) != ("similarity" in parameters), f"{name}: distance= or similarity=, one"
    assert {"reduction", "backend"} <= set(parameters), name


@pytest.mark.parametrize("name", LOSSES)
def test_shared_keywords_come_in_one_order(name):
    taken = [keyword for keyword in _parameters(LOSSES[name]) if keyword in KEYWORD_ORDER]
    assert taken == sorted(taken, key=KEYWORD_ORDER.index), f"{name}: {taken}"


def _unusual_defaults():
    """(parameter, loss, default) where the loss's default is not the one most losses that take the parameter have
    (every default of a parameter whose defaults tie)."""
    defaults = {}
    for name, loss in LOSSES.items():
        for parameter in _parameters(loss).values():
            if parameter.default is not parameter.empty and parameter.name not in _vocabulary.ARRAYS:
                defaults.setdefault(parameter.name, {})[name] = repr(parameter.default)
    unusual = []
    for parameter, by_loss in defaults.items():
        counts = Counter(by_loss.values()).most_common()
        usual = counts[0][0] if len(counts) == 1 or counts[0][1] > counts[1][1] else None
        unusual += [(parameter, name, default) for name, default in by_loss.items() if default != usual]
    return unusual


def test_a_default_that_differs_from_the_other_losses_has_its_reason():
    unusual = _unusual_defaults()
    missing = [f"{name}({p}={d})" for p, name, d in unusual if name not in _vocabulary.DIFFERING_DEFAULTS.get(p, {})]
    assert not missing, f"give these defaults their reason in _vocabulary.DIFFERING_DEFAULTS: {missing}"
    listed = {(p, name) for p, name, _ in unusual}
    stale = [(p, name) for p, reasons in _vocabulary.DIFFERING_DEFAULTS.items() for name in reasons]
    assert set(stale) <= listed, f"reasons for defaults that do not differ: {sorted(set(stale) - listed)}"


def test_every_guess_names_a_parameter_of_the_vocabulary():
    for guess, right, *_ in _vocabulary.GUESSES:
        assert right in _vocabulary.MEANINGS, (guess, right)


def _batch():
    x = np.random.default_rng(0).standard_normal((8, 3))
    return x, np.repeat(np.arange(4), 2)


@pytest.mark.parametrize(
    "loss, keyword, message",
    [
        ("circle_loss", "m", r"circle_loss\(\) takes no m=; the margin m is margin= here"),
        ("circle_loss", "gamma", r"γ is scale= here"),
        ("multi_similarity_loss", "base", r"λ is threshold= here \(pytorch-metric-learning's base\)"),
        ("multi_similarity_loss", "alpha", r"α is positive_scale= here"),
        ("multi_similarity_loss", "beta", r"β is negative_scale= here"),
        ("multi_similarity_loss", "margin", r"threshold= here \(the margin of its pair mining is epsilon=\)"),
        ("ntxent_loss", "scale", r"τ is temperature= here \(temperature = 1 / scale"),
        ("ntxent_loss", "tau", r"τ is temperature= here"),
        ("contrastive_loss", "metric", r"the distance is distance= here \(scikit-learn's metric\)"),
        ("supcon_loss", "distance", r"the similarity is similarity= here"),
        ("triplet_loss", "miner", r"the choice of tuples is mining= here"),
        ("quadruplet_loss", "mining", r"the paper's online hard negative mining is adaptive_margins= here"),
        ("quadruplet_loss", "ref_embeddings", r"quadruplet_loss\(\) takes no ref_embeddings=: its second term's"),
        ("npair_loss", "ref_embeddings", r"npair_loss\(\) takes no ref_embeddings=: .* npair_pairs_loss"),
        ("npair_loss", "margin", r"npair_loss\(\) takes no margin=: a softmax cross-entropy over similarities"),
        ("ntxent_loss", "margin", r"has no margin; its sharpness is temperature="),
        ("contrastive_loss", "marign", r"unexpected keyword argument 'marign'; did you mean margin=\?"),
    ],
)
def test_a_wrong_guess_names_the_parameter_that_means_it(loss, keyword, message):
    with pytest.raises(TypeError, match=message):
        getattr(ml, loss)(*_batch(), **{keyword: 1.0})


def test_the_issue_s_calls_behave_as_the_table_says():
    x, labels = _batch()
    assert np.isfinite(ml.npair_loss(x, labels)[0])
    assert np.isfinite(ml.circle_loss(x, labels, margin=0.25)[0])
    for mining in ("all", "epsilon"):
        assert np.isfinite(ml.multi_similarity_loss(x, labels, mining=mining)[0])
    with pytest.raises(ValueError, match=r"mining must be one of"):
        ml.multi_similarity_loss(x, labels, mining="hard")


@pytest.mark.parametrize(("parameter", "options"), [("sampling", ml.WARP_SAMPLINGS), ("weighting", ml.WARP_WEIGHTINGS)])
def test_warp_s_options_in_the_table_are_the_ones_warp_takes(parameter, options):
    """The table names exactly the strings WARP accepts for its options (it once named 'all' and 'linear', which
    warp_loss refuses)."""
    assert re.findall(r"`'(\w+)'`", _vocabulary.MEANINGS[parameter]) == list(options)


def test_the_user_guide_s_vocabulary_page_is_written_from_the_tables():
    page = (ROOT / "docs" / "guide" / "vocabulary.md").read_text()
    assert _vocabulary.page_tables() in page, "run `python docs/write_vocabulary.py` to rewrite the page's tables"


def test_every_call_the_readme_shows_fits_the_signature():
    """The README's calls (its tables and its text) name a loss's arrays in their order and only keywords it takes."""
    readme = (ROOT / "README.md").read_text()
    calls = re.findall(r"`(\w+_loss)\(([^)`]*)\)", readme)
    assert len(calls) >= 20
    for name, arguments in calls:
        parameters = list(_parameters(getattr(ml, name)))
        words = [w.strip() for w in arguments.replace("[", "").replace("]", "").split(",")]
        positional = [w for w in words if w and "=" not in w and w not in ("...", "*")]
        keywords = [w.split("=")[0] for w in words if "=" in w]
        assert positional == parameters[: len(positional)], f"README: {name}({arguments}) against {parameters}"
        assert set(keywords) <= set(parameters), f"README: {name}({arguments}) against {parameters}"
