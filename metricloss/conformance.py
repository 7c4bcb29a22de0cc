"""Conformance: run another implementation of a loss against metricloss over a bank of cases that break losses.

:func:`check` calls a candidate loss and a metricloss loss (the reference, with the settings given) on the same
seeded bank of inputs and sorts every case into one kind:

==============  ==========================================================================================
kind            meaning
==============  ==========================================================================================
``agrees``      value and gradients equal to the tolerance of the case's dtype (both refusing counts too)
``value``       the values differ (on any case: a value never differs at a convention)
``gradient``    the values agree, the gradients differ
``nonfinite``   the candidate returned NaN or ±inf (metricloss never does)
``raises``      one of the two raised and the other did not
``convention``  the values agree and the gradients differ on a case built at a documented convention: the
                slope of a hinge at exactly zero, or the choice between equally hard candidates, where two
                correct implementations may disagree. A hinge is continuous and tied candidates give one
                value, so a value that differs there is a ``value`` disagreement, not a convention.
==============  ==========================================================================================

Errors are relative to the reference's magnitude (its value; the largest entry of each gradient). Where the
reference's value or gradient is exactly 0 there is no magnitude to divide by: the report gives the absolute
difference instead, marked ``abs``.

Candidates are taken as users have them: a NumPy function returning ``(value, grad)`` (``grad`` a tuple when the
reference differentiates several inputs); a PyTorch function or ``nn.Module`` returning a scalar tensor, or a
pytorch-metric-learning loss object (or a ``(loss, miner)`` pair), whose gradient torch's autograd takes; a JAX or
TensorFlow function returning a scalar, differentiated by ``jax.value_and_grad`` or ``tf.GradientTape``. Every
framework is imported lazily, only for a candidate written in it, and computes in the case's dtype (float64
cases in float64: JAX under ``jax.experimental.enable_x64``). The calling convention is the reference's: a batch
loss (``npair_loss`` among them, pytorch-metric-learning's ``NPairsLoss``) is called as
``candidate(embeddings, labels)`` (and, for query-vs-reference cases, with ``ref_embeddings=`` and ``ref_labels=``
keywords, if its signature takes them); ``triplet_margin_loss`` as ``candidate(anchors, positives, negatives)``; the
pair losses as ``candidate(x1, x2, y)`` (``y`` a float array in {−1, 1}, or in {0, 1} for
``contrastive_pair_loss``); ``hinge_embedding_loss`` as ``candidate(x, y)``.

:func:`identify` searches the reference's documented options for the settings that reproduce a candidate.
``python -m metricloss.conformance module:candidate --against triplet_loss --mining hard`` prints the report and
exits with status 1 where the candidate disagrees (``--json`` for machines, ``--identify`` to search).

Examples
--------
>>> import numpy as np
>>> from metricloss.conformance import check
>>> def my_hinge_embedding(x, y):  # torch's HingeEmbeddingLoss, by hand, with the sign of the gradient wrong
...     similar = y == 1
...     terms = np.where(similar, x, np.maximum(1.0 - x, 0.0))
...     grad = np.where(similar, 1.0, np.where(1.0 - x > 0, -1.0, 0.0)) / x.size
...     return terms.mean(), -grad
>>> report = check(my_hinge_embedding, "hinge_embedding_loss")
>>> report.agrees
False
>>> report.counts["gradient"] > 0, report.counts["value"]
(True, 0)
"""

import argparse
import importlib
import importlib.util
import inspect
import json
import math
import sys
from dataclasses import dataclass, field

import numpy as np

import metricloss
from metricloss.testing import CONFORMANCE_FLOORS, CONFORMANCE_TOLERANCES

KINDS = ("agrees", "value", "gradient", "nonfinite", "raises", "convention")
KIND_TITLES = {
    "agrees": "agrees",
    "value": "differs in value",
    "gradient": "differs in gradient only",
    "nonfinite": "NaN / inf",
    "raises": "raises",
    "convention": "differs at a convention",
}
_SHRUNK_TITLES = {
    "value": "that differs in value",
    "gradient": "that differs in gradient only",
    "nonfinite": "that gives NaN / inf",
    "raises": "on which one side raises",
}
FRAMEWORKS = ("numpy", "torch", "jax", "tensorflow")

# How each reference is called: (the names of its positional arrays, the positions of the differentiable ones).
_CALLING = {
    "batch": (("embeddings", "labels"), (0,)),
    "triplets": (("anchors", "positives", "negatives"), (0, 1, 2)),
    "signed_pairs": (("x1", "x2", "y"), (0, 1)),
    "binary_pairs": (("x1", "x2", "y"), (0, 1)),
    "ranked_scores": (("x1", "x2", "y"), (0, 1)),
    "signed_scores": (("x", "y"), (0,)),
}
# The batch losses whose kink and tie cases are conventions: a hinge at the margin m, a hardest candidate.
_HINGED_BATCH_LOSSES = ("triplet_loss", "contrastive_loss")
_CONVENTIONS = {
    "triplet_margin_loss": "triplets",
    "cosine_embedding_loss": "signed_pairs",
    "contrastive_pair_loss": "binary_pairs",
    "margin_ranking_loss": "ranked_scores",
    "hinge_embedding_loss": "signed_scores",
}
# Arguments a reference learns (their gradient returned right after the embeddings') that a setting gives as a
# constant, as the candidates hold it: margin_loss's β. Their gradient is left out of the comparison.
_HELD_CONSTANT = {"margin_loss": ("beta",)}


# ---------------------------------------------------------------------------------------------------------------
# Cases


@dataclass(frozen=True, eq=False)
class Case:
    """One input of the bank: the reference's positional arrays ``args`` and keyword arrays ``kwargs``, and what
    it tests in words. ``convention`` is ``"kink"`` or ``"ties"`` for a case built at a documented convention."""

    name: str
    description: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    convention: str | None = None

    @property
    def dtype(self):
        return next(np.dtype(a.dtype) for a in self.args if np.dtype(a.dtype).kind == "f")

    @property
    def size(self):
        """The number of input entries, to find the smallest failing case."""
        return sum(int(np.size(a)) for a in (*self.args, *self.kwargs.values()))


def _margin(settings, default=1.0):
    margin = settings.get("margin")
    return float(default if margin is None else margin)


def _pk(rng, p, k, features=3, scale=0.6):
    return scale * rng.standard_normal((p * k, features)), np.repeat(np.arange(p), k)


def _batch_cases(settings, rng, references):
    """Labelled batches (embeddings, labels), and query-vs-reference batches where the candidate takes them."""
    m = _margin(settings, 0.0 if settings.get("soft") else 1.0)
    x, y = _pk(rng, 4, 3)
    cases = [
        ("random P×K", "4 classes × 3 samples, Gaussian rows at a scale where some terms are active", x, y),
        ("random P×K, float32", "the same batch in float32", x.astype(np.float32), y),
    ]
    big_x, big_y = _pk(rng, 8, 4, features=16, scale=0.3)
    cases.append(("random P×K, 8×4", "8 classes × 4 samples, 16 features", big_x, big_y))
    dup = x.copy()
    dup[1] = dup[0]  # a positive at distance 0
    dup[4] = dup[0]  # a negative at distance 0
    cases.append(("duplicated rows", "rows repeated within a class and across classes: distances exactly 0", dup, y))
    cases.append(("duplicated rows, float32", "the same, in float32", dup.astype(np.float32), y))
    cases.append(("lone sample", "a batch of one row: no pair at all", x[:1], y[:1]))
    cases.append(("one class", "every row of the same class: no negative anywhere", x[:5], np.zeros(5, dtype=int)))
    cases.append(("all distinct classes", "every row its own class: no positive anywhere", x[:6], np.arange(6)))
    lonely = np.concatenate([y[:9], [7, 8]])
    cases.append(
        ("anchors without positive", "a P×K batch and two singleton classes", np.vstack([x[:9], x[9:11]]), lonely)
    )
    zero = x.copy()
    zero[[0, 5]] = 0.0
    cases.append(("all-zero rows", "two rows exactly zero (the cosine is undefined there)", zero, y))
    for scale in (1e-30, 1e-8, 1e3, 1e6):
        cases.append((f"norms ~{scale:g}", f"the P×K batch scaled to norms about {scale:g}", x * scale, y))
    cases.append(("norms ~1e+06, float32", "the same, in float32", (x * 1e6).astype(np.float32), y))
    convention_cases = [
        (
            "ties",
            "an anchor with two positives at the same distance and two negatives at the same distance: which one "
            "is hardest is a convention (metricloss: the lowest index)",
            np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]),
            np.array([0, 0, 0, 1, 1]),
            "ties",
        ),
        (
            "at the kink",
            f"a triplet with d_an = d_ap + m exactly and a dissimilar pair at distance m exactly (m = {m:g}): "
            "hinges at exactly 0, whose slope is a convention (metricloss: 0)",
            np.array([[0.0, 0.0], [1.0, 0.0], [-(1.0 + m), 0.0], [0.0, m]]),
            np.array([0, 0, 1, 2]),
            "kink",
        ),
    ]
    out = [Case(name, what, (a, labels)) for name, what, a, labels in cases]
    out += [Case(name, what, (a, labels), convention=c) for name, what, a, labels, c in convention_cases]
    if references:
        refs, ref_y = _pk(rng, 4, 4)
        close = 0.1 * x
        out.append(
            Case(
                "query-vs-reference",
                "12 queries against 16 separate references (ref_embeddings=, ref_labels=)",
                (x, y),
                {"ref_embeddings": refs, "ref_labels": ref_y},
            )
        )
        out.append(
            Case(
                "references equal to queries",
                "the query arrays passed again as the references (the same objects), rows close enough for the "
                "self pairs to be active: a reference set is another set, so the pairs (i, i) count "
                "(pytorch-metric-learning excludes them by object identity, its issue #488)",
                (close, y),
                {"ref_embeddings": close, "ref_labels": y},
            )
        )
        out.append(
            Case(
                "query without negative",
                "references all of one class: the queries of that class have no negative among them",
                (x[:6], y[:6]),
                {"ref_embeddings": refs[:4], "ref_labels": np.zeros(4, dtype=int)},
            )
        )
    return out


def _row_cases(settings, rng, convention):
    """Explicit rows: (anchor, positive, negative) triplets or (x1, x2, y) pairs."""
    m = _margin(settings, {"signed_pairs": 0.0}.get(convention, 1.0))
    n = 6
    a = 0.6 * rng.standard_normal((n, 4))
    b = a + 0.6 * rng.standard_normal((n, 4))
    c = a + 0.9 * rng.standard_normal((n, 4))
    if convention == "triplets":
        make = lambda *rows: tuple(rows)  # noqa: E731
        base = (a, b, c)
    else:
        targets = (0.0, 1.0) if convention == "binary_pairs" else (-1.0, 1.0)
        y = np.array([targets[k % 2] for k in range(n)])
        make = lambda u, v, t=None: (u, v, y[: len(u)] if t is None else t)  # noqa: E731
        base = (a, b)
    cases = [
        Case("random rows", f"{n} rows of 4 features, some terms active", make(*base)),
        Case("random rows, float32", "the same in float32", make(*(r.astype(np.float32) for r in base))),
        Case("one row", "a single row", make(*(r[:1] for r in base))),
        Case("identical rows", "each row equal to its partner: distances exactly 0", make(*(a for _ in base))),
        Case("identical rows, float32", "the same in float32", make(*(a.astype(np.float32) for _ in base))),
    ]
    zero = a.copy()
    zero[[0, 3]] = 0.0
    if convention == "triplets":
        zero_rows = make(zero, *base[1:])
    else:  # similar pairs: a dissimilar pair with a zero row sits at cosine 0, the kink when m = 0
        zero_rows = make(zero, b, np.where(np.isin(np.arange(n), [0, 3]), 1.0, y))
    cases.append(Case("all-zero rows", "two rows exactly zero (cosine undefined there)", zero_rows))
    for scale in (1e-30, 1e-8, 1e3, 1e6):
        cases.append(
            Case(f"norms ~{scale:g}", f"the rows scaled to norms about {scale:g}", make(*(r * scale for r in base)))
        )
    cases.append(
        Case("norms ~1e+06, float32", "the same in float32", make(*((r * 1e6).astype(np.float32) for r in base)))
    )
    if convention == "triplets":
        kink = (np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[1.0 + m, 0.0]]))
        what = f"d(a, n) = d(a, p) + m exactly (m = {m:g}) with the exact distance: a hinge at exactly 0"
        cases.append(Case("at the kink", what, kink, convention="kink"))
        tie = (np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.0, 0.5]]))
        what = "d(p, n) = d(a, n): with swap, which distance takes the gradient is a convention"
        cases.append(Case("swap tie", what, tie, convention="ties"))
    elif convention == "signed_pairs":
        u = np.array([[1.0, 0.0], [0.0, 1.0]])
        v = np.array([[m, math.sqrt(max(1.0 - m * m, 0.0))], [-math.sqrt(max(1.0 - m * m, 0.0)), m]])
        what = f"dissimilar pairs at cosine m exactly (m = {m:g}): a hinge at exactly 0"
        cases.append(Case("at the kink", what, (u, v, np.array([-1.0, -1.0])), convention="kink"))
        cases.append(Case("all similar", "every pair similar (y = 1)", make(a, b, np.ones(n))))
        cases.append(Case("all dissimilar", "every pair dissimilar (y = −1)", make(a, b, -np.ones(n))))
    else:
        u = np.zeros((2, 2))
        v = np.array([[m, 0.0], [0.0, m]])
        what = f"dissimilar pairs at distance m exactly (m = {m:g}): a hinge at exactly 0"
        cases.append(Case("at the kink", what, (u, v, np.array([0.0, 0.0])), convention="kink"))
        cases.append(Case("all similar", "every pair similar (y = 1)", make(a, b, np.ones(n))))
        cases.append(Case("all dissimilar", "every pair dissimilar (y = 0)", make(a, b, np.zeros(n))))
    return cases


def _score_cases(settings, rng, convention):
    """Scores: (x1, x2, y) for margin ranking, (x, y) for hinge embedding; y in {−1, 1}."""
    m = _margin(settings, 0.0 if convention == "ranked_scores" else 1.0)
    n = 9
    y = np.array([(-1.0, 1.0)[k % 2] for k in range(n)])
    if convention == "ranked_scores":
        s1, s2 = rng.standard_normal(n), rng.standard_normal(n)
        make = lambda f, t=y: (f(s1), f(s2), t)  # noqa: E731
        kink = (np.array([1.0 + m, 1.0]), np.array([1.0, 1.0 + m]), np.array([-1.0, 1.0]))
        kink_what = f"y·(x1 − x2) = m exactly (m = {m:g}): hinges at exactly 0"
        ties = (np.ones(4), np.ones(4), np.array([1.0, -1.0, 1.0, -1.0]))
        tie_what = "x1 = x2 everywhere"
    else:
        s = np.abs(1.5 * rng.standard_normal(n))
        make = lambda f, t=y: (f(s), t)  # noqa: E731
        kink = (np.array([m, m]), np.array([-1.0, -1.0]))
        kink_what = f"dissimilar scores equal to m exactly (m = {m:g}): a hinge at exactly 0"
        ties = (np.zeros(4), np.array([1.0, -1.0, 1.0, -1.0]))
        tie_what = "every score exactly 0"
    cases = [
        Case("random scores", f"{n} Gaussian scores, some terms active", make(lambda v: v)),
        Case(
            "random scores, float32", "the same in float32", make(lambda v: v.astype(np.float32), y.astype(np.float32))
        ),
        Case("one score", "a single score", make(lambda v: v[:1], y[:1])),
        Case(
            "scores as a matrix", "the scores shaped (3, 3): any rank", make(lambda v: v.reshape(3, 3), y.reshape(3, 3))
        ),
        Case("equal scores", tie_what, ties, convention="kink" if m == 0 and convention == "ranked_scores" else None),
        Case("all y = 1", "every target 1", make(lambda v: v, np.ones(n))),
        Case("all y = −1", "every target −1", make(lambda v: v, -np.ones(n))),
    ]
    for scale in (1e-30, 1e3, 1e6):
        cases.append(
            Case(f"scores ~{scale:g}", f"the scores scaled to about {scale:g}", make(lambda v, k=scale: v * k))
        )
    cases.append(Case("at the kink", kink_what, kink, convention="kink"))
    return cases


def _cast(case, dtype):
    """``case`` with its float arrays copied into ``dtype`` (None: their own; an array passed twice stays one
    object)."""
    converted = {}

    def cast(a):
        if np.asarray(a).dtype.kind != "f":
            return a
        if id(a) not in converted:
            converted[id(a)] = np.asarray(a).astype(dtype or np.asarray(a).dtype)
        return converted[id(a)]

    args = tuple(cast(a) for a in case.args)
    kwargs = {k: cast(v) for k, v in case.kwargs.items()}
    return Case(case.name, case.description, args, kwargs, case.convention)


def bank(reference, *, seed=0, references=True, dtype=None, **settings):
    """The seeded bank of cases for ``reference`` (a metricloss loss or its name) with ``settings`` (the margin
    places the kink cases): a list of :class:`Case`, each saying in words what it tests.

    Examples
    --------
    >>> from metricloss.conformance import bank
    >>> [case.name for case in bank("margin_ranking_loss")][:3]
    ['random scores', 'random scores, float32', 'one score']

    ``dtype`` casts every case to one dtype, for an implementation that computes in float32 only (the cases that
    are the float32 copies of others are then dropped).
    """
    fn, convention = _reference(reference)
    rng = np.random.default_rng(seed)
    if convention == "batch":
        takes_refs = "ref_embeddings" in inspect.signature(fn).parameters
        cases = _batch_cases(settings, rng, references and takes_refs)
        if fn.__name__ not in _HINGED_BATCH_LOSSES:  # no hinge at the margin, no hardest candidate: plain cases
            cases = [Case(c.name, c.description, c.args, c.kwargs) for c in cases]
    elif convention in ("ranked_scores", "signed_scores"):
        cases = _score_cases(settings, rng, convention)
    else:
        cases = _row_cases(settings, rng, convention)
    if dtype is None:
        return cases
    dtype = np.dtype(dtype)
    if dtype not in CONFORMANCE_TOLERANCES:
        raise ValueError(f"dtype must be float32 or float64; got {dtype}")
    copies = ", float32"
    return [_cast(c, dtype) for c in cases if not (dtype == np.float32 and c.name.endswith(copies))]


def _reference(reference):
    """The metricloss loss and its calling convention."""
    fn = getattr(metricloss, reference, None) if isinstance(reference, str) else reference
    name = getattr(fn, "__name__", repr(reference))
    if fn is None or not callable(fn) or name not in metricloss.__all__ or not name.endswith("_loss"):
        raise ValueError(f"reference must be the name of a metricloss loss, e.g. 'triplet_loss'; got {reference!r}")
    if name in _CONVENTIONS:
        return fn, _CONVENTIONS[name]
    if list(inspect.signature(fn).parameters)[:2] == ["embeddings", "labels"]:
        return fn, "batch"
    raise ValueError(
        f"reference {name} has no calling convention the checker knows yet; it checks the losses on labelled "
        f"batches (embeddings, labels) and {', '.join(sorted(_CONVENTIONS))}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Candidates


def _root(obj):
    module = getattr(obj, "__module__", None) or ""
    return module.split(".")[0]


def _detect_framework(candidate):
    """Which framework computes ``candidate``: from its type (an ``nn.Module``, a jitted or ``tf.function``), from
    its module (a loss wrapped by ``metricloss.adapters``), or from the modules its code names (``torch.``,
    ``jnp.``, ``tf.``); NumPy otherwise."""
    if isinstance(candidate, tuple):
        return "torch"  # a (loss, miner) pair of pytorch-metric-learning
    roots = {_root(cls) for cls in type(candidate).__mro__}
    for framework, names in (("torch", {"torch", "pytorch_metric_learning"}), ("jax", {"jax", "jaxlib"})):
        if roots & names:
            return framework
    if any(root.startswith(("tensorflow", "keras")) for root in roots):
        return "tensorflow"
    fn = inspect.unwrap(candidate) if callable(candidate) else candidate
    adapter = getattr(fn, "__module__", None) or ""
    if adapter.startswith("metricloss.adapters."):  # a metricloss loss wrapped for a framework
        return adapter.rpartition(".")[2]
    code = getattr(fn, "__code__", None)
    if code is None:
        return "numpy"
    closure = inspect.getclosurevars(fn)
    scope = {**getattr(fn, "__globals__", {}), **closure.globals, **closure.nonlocals}
    names, stack = set(), [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names, current.co_freevars)
        stack.extend(const for const in current.co_consts if inspect.iscode(const))
    found = set()
    for name in names:
        value = scope.get(name)
        root = (getattr(value, "__name__", "") if inspect.ismodule(value) else _root(value)).split(".")[0]
        if root in ("torch", "pytorch_metric_learning"):
            found.add("torch")
        elif root in ("jax", "jaxlib"):
            found.add("jax")
        elif root.startswith(("tensorflow", "keras")):  # tensorflow_addons too
            found.add("tensorflow")
    if len(found) > 1:
        raise ValueError(f"the candidate's code uses {sorted(found)}; say which computes it with framework=")
    return found.pop() if found else "numpy"


def _takes_references(candidate):
    if isinstance(candidate, tuple) or any(_root(c) == "pytorch_metric_learning" for c in type(candidate).__mro__):
        return True
    target = candidate.forward if hasattr(candidate, "forward") else candidate
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return "ref_embeddings" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _pml_function(candidate):
    """A pytorch-metric-learning loss (and miner) as ``f(embeddings, labels, ref_embeddings=, ref_labels=)``."""
    loss, miner = candidate if isinstance(candidate, tuple) else (candidate, None)

    def pml(embeddings, labels, ref_embeddings=None, ref_labels=None):
        refs = {} if ref_embeddings is None else {"ref_emb": ref_embeddings, "ref_labels": ref_labels}
        indices = None if miner is None else miner(embeddings, labels, **refs)
        return loss(embeddings, labels, indices, **refs)

    return pml


def _unique(case, differentiable):
    """The differentiable arrays of a case as (key, array) and the distinct arrays among them (by identity: the
    same object passed twice is one input, whose gradient is the sum of the two)."""
    keyed = [(("arg", i), case.args[i]) for i in differentiable]
    keyed += [(("kw", k), v) for k, v in case.kwargs.items() if np.asarray(v).dtype.kind == "f"]
    distinct = list({id(a): a for _, a in keyed}.values())
    return keyed, distinct


def _merge(grads, keyed, distinct):
    """Per-input gradients summed over the inputs that are the same array."""
    total = {id(a): np.zeros(a.shape) for a in distinct}
    for (_, array), g in zip(keyed, grads, strict=True):
        total[id(array)] = total[id(array)] + np.asarray(g, dtype=np.float64)
    return [total[id(a)] for a in distinct]


def _call_numpy(fn, case, differentiable):
    case = _cast(case, None)  # copies, so that a candidate writing into its inputs cannot change the bank
    keyed, distinct = _unique(case, differentiable)
    value, grads = fn(*case.args, **case.kwargs)
    grads = grads if isinstance(grads, tuple | list) else (grads,)
    if len(grads) != len(keyed):
        raise TypeError(f"returned {len(grads)} gradients for {len(keyed)} differentiable inputs")
    for g, (_, a) in zip(grads, keyed, strict=True):
        if np.shape(g) != a.shape:
            raise TypeError(f"returned a gradient of shape {np.shape(g)} for an input of shape {a.shape}")
    if np.size(value) != 1:
        raise TypeError(f"returned a value of shape {np.shape(value)}, not a scalar")
    return float(np.asarray(value).reshape(-1)[0]), _merge(grads, keyed, distinct)


def _framework_call(case, differentiable, convert):
    """The case's arguments converted by ``convert`` (the same object once), and the distinct differentiable ones."""
    _, distinct = _unique(case, differentiable)
    cache = {}

    def as_framework(a):
        if id(a) not in cache:
            cache[id(a)] = convert(np.asarray(a), any(a is d for d in distinct))
        return cache[id(a)]

    args = [as_framework(a) for a in case.args]
    kwargs = {k: as_framework(v) for k, v in case.kwargs.items()}
    return args, kwargs, [cache[id(a)] for a in distinct], distinct


def _call_torch(fn, case, differentiable):
    import torch

    def convert(a, grad):
        t = torch.tensor(a)
        return t.requires_grad_(True) if grad else t

    args, kwargs, leaves, distinct = _framework_call(case, differentiable, convert)
    value = fn(*args, **kwargs)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"returned {type(value).__name__}, not a torch.Tensor")
    if value.numel() != 1:
        raise TypeError(f"returned a tensor of shape {tuple(value.shape)}, not a scalar")
    grads = torch.autograd.grad(value.reshape(()), leaves, allow_unused=True)
    return float(value.detach().reshape(())), [
        np.zeros(a.shape) if g is None else g.detach().numpy().astype(np.float64)
        for g, a in zip(grads, distinct, strict=True)
    ]


def _call_jax(fn, case, differentiable):
    import jax

    enable_x64 = getattr(jax, "enable_x64", None)  # jax >= 0.7; jax.experimental's before
    if enable_x64 is None:
        from jax.experimental import enable_x64

    with enable_x64(True):
        import jax.numpy as jnp

        args, kwargs, leaves, _ = _framework_call(case, differentiable, lambda a, g: jnp.asarray(a))
        ids = [id(leaf) for leaf in leaves]

        def of_leaves(*new):
            swap = dict(zip(ids, new, strict=True))
            return jnp.reshape(
                fn(*[swap.get(id(a), a) for a in args], **{k: swap.get(id(v), v) for k, v in kwargs.items()}), ()
            )

        value, grads = jax.value_and_grad(of_leaves, argnums=tuple(range(len(leaves))))(*leaves)
        return float(value), [np.asarray(g, dtype=np.float64) for g in grads]


def _call_tensorflow(fn, case, differentiable):
    import tensorflow as tf

    args, kwargs, leaves, distinct = _framework_call(case, differentiable, lambda a, g: tf.constant(a))
    with tf.GradientTape() as tape:
        for leaf in leaves:
            tape.watch(leaf)
        value = fn(*args, **kwargs)
    grads = tape.gradient(value, leaves)
    return float(tf.reshape(value, ())), [
        np.zeros(a.shape) if g is None else np.asarray(g, dtype=np.float64)
        for g, a in zip(grads, distinct, strict=True)
    ]


_CALLERS = {"numpy": _call_numpy, "torch": _call_torch, "jax": _call_jax, "tensorflow": _call_tensorflow}


def _as_caller(candidate, framework):
    """``candidate`` as ``call(case, differentiable) -> (value, gradients of the distinct differentiable inputs)``."""
    if framework is None:
        framework = _detect_framework(candidate)
    elif framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(map(repr, FRAMEWORKS))}; got {framework!r}")
    fn = candidate
    if framework == "torch" and (
        isinstance(candidate, tuple) or any(_root(c) == "pytorch_metric_learning" for c in type(candidate).__mro__)
    ):
        fn = _pml_function(candidate)
    if not callable(fn):
        raise TypeError(f"candidate must be callable; got {type(candidate).__name__}")
    call = _CALLERS[framework]
    return lambda case, differentiable: call(fn, case, differentiable), framework


def _candidate_name(candidate):
    if isinstance(candidate, tuple):
        return " + ".join(type(part).__name__ for part in candidate)
    return getattr(candidate, "__qualname__", None) or type(candidate).__name__


# ---------------------------------------------------------------------------------------------------------------
# Comparing


@dataclass(frozen=True)
class Outcome:
    """What one case gave: its kind (one of ``KINDS``), the worst error over the value and gradients (NaN where
    there is nothing to compare), whether that error is ``absolute`` (the reference's quantity is exactly 0, so
    the error is the difference itself) or relative to the reference's magnitude, and a line of detail."""

    case: Case
    kind: str
    error: float
    detail: str
    absolute: bool = False

    @property
    def error_text(self):
        """The error as the report prints it: ``2.1e-06``, or ``1 abs`` for an absolute difference."""
        if math.isnan(self.error):
            return ""
        return f"{self.error:.2g}" + (" abs" if self.absolute and self.error != 0 else "")


@dataclass(frozen=True)
class _Discrepancy:
    """How far a candidate's array is from the reference's: ``size``, the largest difference over the reference's
    magnitude bounded below by the dtype's floor, decides agreement against the tolerance; ``error`` is what the
    report prints: that difference relative to the magnitude, or, where the reference is exactly 0 (no magnitude
    to be relative to), the difference itself (``absolute``)."""

    size: float
    error: float
    absolute: bool


def _discrepancy(got, expected, floor):
    with np.errstate(invalid="ignore", over="ignore"):
        magnitude = float(np.max(np.abs(expected), initial=0.0))
        difference = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - expected), initial=0.0))
        size = difference / max(magnitude, floor)
    if magnitude == 0.0:
        return _Discrepancy(size, difference, absolute=True)
    return _Discrepancy(size, size if magnitude >= floor else difference / magnitude, absolute=False)


def _error_words(discrepancy):
    if discrepancy.absolute:
        return f"absolute difference {discrepancy.error:.3g}, metricloss's being exactly 0"
    return f"relative error {discrepancy.error:.3g}"


def _outcome(case, reference_result, candidate_result, rtol):
    dtype = case.dtype
    rtol = CONFORMANCE_TOLERANCES[dtype] if rtol is None else rtol
    floor = CONFORMANCE_FLOORS[dtype]
    (ref_ok, ref), (cand_ok, cand) = reference_result, candidate_result
    if not ref_ok and not cand_ok:
        return Outcome(case, "agrees", math.nan, f"both refuse (metricloss: {ref})")
    if not ref_ok:
        return Outcome(case, "raises", math.nan, f"metricloss refuses: {ref}")
    if not cand_ok:
        return Outcome(case, "raises", math.nan, f"candidate raised {cand}")
    (ref_value, ref_grads), (value, grads) = ref, cand
    if not math.isfinite(value) or not all(np.isfinite(g).all() for g in grads):
        bad = "value" if not math.isfinite(value) else "gradient"
        return Outcome(case, "nonfinite", math.nan, f"candidate's {bad} is not finite (value {value!r})")
    value_error = _discrepancy(value, np.float64(ref_value), floor)
    grad_errors = [_discrepancy(g, r, floor) for g, r in zip(grads, ref_grads, strict=True)]
    grad_error = max(grad_errors, key=lambda d: d.size, default=_Discrepancy(0.0, 0.0, False))
    worst = max(value_error, grad_error, key=lambda d: d.size)
    detail = f"value {value:.10g} vs metricloss {ref_value:.10g}"

    def outcome(kind, detail):
        return Outcome(case, kind, worst.error, detail, worst.absolute)

    if worst.size <= rtol:
        return outcome("agrees", detail)
    # A hinge is continuous and tied candidates give one value: at a convention only the slope may differ.
    if value_error.size > rtol:
        return outcome("value", f"{detail} ({_error_words(value_error)})")
    if case.convention is not None:
        return outcome("convention", f"{case.convention}: values agree; gradient {_error_words(grad_error)}")
    return outcome("gradient", f"values agree; gradient {_error_words(grad_error)}")


def _run(call, case):
    """(True, result) or (False, 'ExceptionType: message')."""
    try:
        return True, call(case)
    except Exception as error:  # a candidate's failure of any kind is a finding, not a crash of the checker
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
        text = lines[-1] if lines[0].endswith(":") else lines[0]  # "in user code:" and the like: the cause is last
        return False, f"{type(error).__name__}: {text[:160]}"


def _reference_call(fn, convention, settings, differentiable):
    n_held = sum(settings.get(name) is not None for name in _HELD_CONSTANT.get(fn.__name__, ()))

    def call(case):
        value, grads = fn(*case.args, **case.kwargs, **settings)
        keyed, distinct = _unique(case, differentiable)
        grads = grads if isinstance(grads, tuple) else (grads,)
        grads = grads[:1] + grads[1 + n_held :]  # the embeddings', then the references' (held constants' left out)
        return value, _merge(grads, keyed, distinct)

    return call


@dataclass
class Report:
    """The outcome of every case of a check, and a summary per kind.

    ``agrees`` is True when every case agrees or differs only at a convention. ``counts[kind]`` is the number of
    cases of each kind; ``summary()`` gives, per kind, the worst relative error and the smallest case (and for a
    disagreement, that case shrunk: ``shrunk[kind]``, a :class:`Case` with as few rows as still fail that way);
    ``table()`` the text the command prints; ``to_json()`` a dict of plain values.
    """

    candidate: str
    framework: str
    reference: str
    settings: dict
    outcomes: list
    # per kind of disagreement, the smallest failing case with rows removed while it still fails that way
    shrunk: dict = field(default_factory=dict)
    arg_names: tuple = ()

    @property
    def counts(self):
        return {kind: sum(o.kind == kind for o in self.outcomes) for kind in KINDS}

    @property
    def agrees(self):
        return all(o.kind in ("agrees", "convention") for o in self.outcomes)

    def differing(self):
        """The names of the cases that disagree beyond a convention."""
        return [o.case.name for o in self.outcomes if o.kind not in ("agrees", "convention")]

    def summary(self):
        out = {}
        for kind in KINDS:
            chosen = [o for o in self.outcomes if o.kind == kind]
            if not chosen:
                continue
            relative = [o.error for o in chosen if not math.isnan(o.error) and not o.absolute]
            absolute = [o.error for o in chosen if not math.isnan(o.error) and o.absolute]
            smallest = min(chosen, key=lambda o: (o.case.size, o.case.name))
            out[kind] = {
                "cases": len(chosen),
                "worst_relative_error": max(relative) if relative else None,
                # over the cases whose worst error is against an exact 0 of metricloss's (no scale to divide by)
                "worst_absolute_difference": max(absolute) if absolute else None,
                "smallest_case": smallest.case.name,
            }
            if kind in self.shrunk:
                out[kind]["shrunk"] = {name: array.tolist() for name, array in self._named(self.shrunk[kind])}
        return out

    def _named(self, case):
        names = self.arg_names or tuple(f"arg{i}" for i in range(len(case.args)))
        return [*zip(names, case.args, strict=False), *case.kwargs.items()]

    def _shrunk_lines(self):
        lines = []
        for kind, case in self.shrunk.items():
            n, refs = _rows(case, "args"), _rows(case, "kwargs")
            rows = f"{n} row{'s' * (n != 1)}" + (f" and {refs} reference{'s' * (refs != 1)}" if refs else "")
            lines += ["", f"smallest input {_SHRUNK_TITLES[kind]} ({case.name}, shrunk to {rows}):"]
            for name, array in self._named(case):
                text = np.array2string(np.asarray(array), precision=6, separator=", ", max_line_width=100)
                lines.append(f"  {name} = " + text.replace("\n", "\n" + " " * (5 + len(name))))
        return lines

    def call(self):
        args = "".join(f", {k}={v!r}" for k, v in self.settings.items())
        return f"{self.reference}(...{args})"

    def table(self):
        verdict = "AGREES" if self.agrees else f"DISAGREES on {len(self.differing())} of {len(self.outcomes)} cases"
        if self.agrees and self.counts["convention"]:
            verdict += f" (and differs at a convention on {self.counts['convention']})"
        lines = [
            f"{self.candidate} ({self.framework}) against metricloss.{self.call()}: {verdict}",
            "",
            f"{'kind':<26}{'cases':>6}  {'worst rel. error':>16}  {'worst abs. diff.':>16}  smallest case",
        ]
        for kind, row in self.summary().items():
            relative, absolute = row["worst_relative_error"], row["worst_absolute_difference"]
            relative = "" if relative is None else f"{relative:.3g}"
            absolute = "" if absolute is None else f"{absolute:.3g}"
            smallest = "" if kind == "agrees" else row["smallest_case"]
            lines.append(f"{KIND_TITLES[kind]:<26}{row['cases']:>6}  {relative:>16}  {absolute:>16}  {smallest}")
        lines += self._shrunk_lines()
        lines += [
            "",
            "error: relative to metricloss's value or gradient; 'abs': the absolute difference where that is exactly 0",
            f"{'case':<30}{'dtype':<9}{'result':<12}{'error':>11}  what it tests / detail",
        ]
        for o in self.outcomes:
            lines.append(f"{o.case.name:<30}{o.case.dtype.name:<9}{o.kind:<12}{o.error_text:>11}  {o.case.description}")
            if o.kind != "agrees":
                lines.append(f"{'':<62}→ {o.detail}")
        return "\n".join(line.rstrip() for line in lines)

    __str__ = table

    def to_json(self):
        return {
            "candidate": self.candidate,
            "framework": self.framework,
            "reference": self.reference,
            "settings": self.settings,
            "agrees": self.agrees,
            "counts": self.counts,
            "summary": self.summary(),
            "cases": [
                {
                    "name": o.case.name,
                    "description": o.case.description,
                    "dtype": o.case.dtype.name,
                    "convention": o.case.convention,
                    "kind": o.kind,
                    "relative_error": None if math.isnan(o.error) or o.absolute else o.error,
                    "absolute_difference": o.error if o.absolute else None,
                    "detail": o.detail,
                }
                for o in self.outcomes
            ],
        }


class _Checker:
    """A candidate and a reference on one bank; the candidate's results are computed once per case."""

    def __init__(self, candidate, reference, framework, seed, references, dtype, bank_settings):
        self.fn, self.convention = _reference(reference)
        self.differentiable = _CALLING[self.convention][1]
        caller, self.framework = _as_caller(candidate, framework)
        self.name = _candidate_name(candidate)
        if references is None:
            references = _takes_references(candidate)
        self.cases = bank(self.fn, seed=seed, references=references, dtype=dtype, **bank_settings)
        self._call = caller
        self._results = {}

    def candidate(self, case):
        if id(case) not in self._results:
            self._results[id(case)] = _run(lambda c: self._call(c, self.differentiable), case)
        return self._results[id(case)]

    def report(self, settings, cases=None, rtol=None):
        reference = _reference_call(self.fn, self.convention, settings, self.differentiable)
        outcomes = [
            _outcome(case, _run(reference, case), self.candidate(case), rtol)
            for case in (self.cases if cases is None else cases)
        ]
        names = _CALLING[self.convention][0]
        return Report(self.name, self.framework, self.fn.__name__, dict(settings), outcomes, arg_names=names)

    def shrink(self, report, rtol=None):
        """For each kind of disagreement, its smallest case with rows removed, one at a time from the last, while
        the case still fails in that kind (queries and references separately), until no row can go."""
        reference = _reference_call(self.fn, self.convention, report.settings, self.differentiable)
        for kind in ("value", "gradient", "nonfinite", "raises"):
            chosen = [o for o in report.outcomes if o.kind == kind]
            if not chosen:
                continue
            case = min(chosen, key=lambda o: (o.case.size, o.case.name)).case
            changed = True
            while changed:
                changed = False
                for group in ("args", "kwargs"):
                    i = _rows(case, group) - 1
                    while i >= 0:
                        smaller = _without_row(case, group, i)
                        if smaller is not None:
                            candidate = _run(lambda c: self._call(c, self.differentiable), smaller)
                            if _outcome(smaller, _run(reference, smaller), candidate, rtol).kind == kind:
                                case, changed = smaller, True
                        i -= 1
            report.shrunk[kind] = case
        return report


def _separate(case):
    """The keyword arrays that are not also positional ones (a reference set distinct from the queries)."""
    given = {id(a) for a in case.args}
    return [k for k, v in case.kwargs.items() if id(v) not in given]


def _rows(case, group):
    if group == "args":
        return len(case.args[0])
    keys = _separate(case)
    return len(case.kwargs[keys[0]]) if keys else 0


def _without_row(case, group, i):
    """``case`` without row ``i`` of its positional arrays (and of keyword arrays that are the same objects), or of
    its separate keyword arrays; None where that would leave no row."""
    if _rows(case, group) <= 1:
        return None
    removed = {}

    def drop(a):
        if id(a) not in removed:
            removed[id(a)] = np.delete(a, i, axis=0)
        return removed[id(a)]

    separate = _separate(case)
    if group == "args":
        args = tuple(drop(a) for a in case.args)
        kwargs = {k: v if k in separate else removed[id(v)] for k, v in case.kwargs.items()}
    else:
        args = case.args
        kwargs = {k: drop(v) if k in separate else v for k, v in case.kwargs.items()}
    return Case(case.name, case.description, args, kwargs, case.convention)


def check(
    candidate, reference, *, framework=None, seed=0, references=None, dtype=None, rtol=None, shrink=True, **settings
):
    """Run ``candidate`` against the metricloss loss ``reference`` with ``settings`` over the bank of cases.

    Parameters
    ----------
    candidate : callable, torch ``nn.Module``, pytorch-metric-learning loss, or a (loss, miner) pair
        See the module docstring for the calling conventions.
    reference : str or callable
        A metricloss loss, or its name (``"triplet_loss"``).
    framework : {"numpy", "torch", "jax", "tensorflow"}, optional
        What computes the candidate; default: detected from its type, or from the modules its code uses.
    seed : int, default 0
        Seed of the bank's random cases.
    references : bool, optional
        Include the query-vs-reference cases (batch losses only); default: if the candidate takes
        ``ref_embeddings`` (pytorch-metric-learning losses do, through ``ref_emb``).
    dtype : {"float32", "float64"}, optional
        Cast every case to this dtype (for an implementation that computes in float32 only, as TF-Addons');
        default: the bank's mix of float64 and float32 cases.
    rtol : float, optional
        Relative tolerance; default :data:`metricloss.testing.CONFORMANCE_TOLERANCES` of each case's dtype.
    shrink : bool, default True
        For each kind of disagreement, shrink its smallest case: remove rows while it still fails that way
        (``Report.shrunk``; printed under the summary).
    **settings
        The reference's hyper-parameters (``mining="hard"``, ``margin=0.5``, ...).

    Returns
    -------
    Report

    Examples
    --------
    >>> import functools
    >>> import metricloss
    >>> from metricloss.conformance import check
    >>> mine = functools.partial(metricloss.margin_ranking_loss, margin=0.5)  # a NumPy (value, grad) function
    >>> report = check(mine, "margin_ranking_loss", margin=0.5)
    >>> report.agrees, report.counts["agrees"] == len(report.outcomes)
    (True, True)
    """
    fn, _ = _reference(reference)
    _check_settings(fn, settings)
    checker = _Checker(candidate, fn, framework, seed, references, dtype, settings)
    report = checker.report(settings, rtol=rtol)
    return checker.shrink(report, rtol) if shrink else report


def _check_settings(fn, settings):
    try:
        inspect.signature(fn).bind_partial(**settings)
    except TypeError as error:
        raise TypeError(f"{fn.__name__} has no such setting: {error}") from None


# ---------------------------------------------------------------------------------------------------------------
# Identifying a candidate's settings


def _first(default, values):
    """``values`` with ``default`` first (the documented default is tried first)."""
    return (default, *(v for v in values if v != default))


# The grids of the continuous hyper-parameters: the documented defaults and the values the papers and
# pytorch-metric-learning use; pass any other value as a fixed setting.
_MARGINS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_TEMPERATURES = (0.05, 0.07, 0.1, 0.2, 0.5, 1.0)  # PML's NT-Xent 0.07, SupCon 0.1; SimCLR's Table 5 0.05 to 1
_REDUCTIONS = metricloss.REDUCTIONS
_DISTANCES = metricloss.DISTANCES  # the triplet and contrastive losses take every distance
_SYMMETRIC = metricloss.SYMMETRIC_DISTANCES  # the lifted, margin and triplet-center losses these only
_SIMILARITIES = _first("cosine", metricloss.SIMILARITIES)
_CONTRASTIVE = {
    "form": metricloss.CONTRASTIVE_FORMS,
    "split_reduction": (False, True),
    "distance": _DISTANCES,
    "reduction": _REDUCTIONS,
    "margin": _MARGINS,
}
_TEMPERATURE_SCALED = {"similarity": _SIMILARITIES, "reduction": _REDUCTIONS}

# What identify searches: for each reference family, a tuple of option spaces (option → values, in the order tried);
# the family's settings are every combination within each space, space after space. Options that only some
# combinations have (incomplete_anchors with hard mining, epsilon with mining) make separate spaces.
SEARCH_SPACES = {
    "triplet_loss": tuple(
        {
            "mining": (mining,),
            "soft": (soft,),
            **({"incomplete_anchors": metricloss.INCOMPLETE_ANCHORS} if mining == "hard" else {}),
            "distance": _DISTANCES,
            "reduction": _REDUCTIONS,
            "margin": ((0.0,) if soft else ()) + _MARGINS,
        }
        for mining in metricloss.MININGS
        for soft in ((False,) if mining == "all_semihard" else (False, True))
    ),
    "contrastive_loss": (_CONTRASTIVE,),
    "contrastive_pair_loss": (_CONTRASTIVE,),
    "triplet_margin_loss": (
        {
            "p": (2, 1, 3),
            "eps": (1e-6, 0.0),
            "swap": (False, True),
            "reduction": _REDUCTIONS,
            "margin": _first(1.0, _MARGINS),
        },
    ),
    "cosine_embedding_loss": ({"reduction": _REDUCTIONS, "margin": (0.0, -0.5, 0.1, 0.2, 0.5)},),
    "margin_ranking_loss": ({"reduction": _REDUCTIONS, "margin": (0.0, *_MARGINS)},),
    "hinge_embedding_loss": ({"reduction": _REDUCTIONS, "margin": _first(1.0, _MARGINS)},),
    # α = 2 and λ = 0.5 (PML's defaults and the paper's code's), or λ = 1; β = 50 (PML's) or 40 (the paper's code's);
    # ε = 0.1 (the paper's code's)
    "multi_similarity_loss": tuple(
        {
            "mining": (mining,),
            **({"epsilon": (0.1,)} if mining == "epsilon" else {}),
            "similarity": _SIMILARITIES,
            "reduction": _REDUCTIONS,
            "positive_scale": (2.0,),
            "negative_scale": (50.0, 40.0),
            "threshold": (0.5, 1.0),
        }
        for mining in metricloss.MULTI_SIMILARITY_MININGS
    ),
    # the paper's (m, γ): (0.4, 80) (the default, PML's), (0.25, 256), (0.25, 128); one term for "all_pairs"
    "circle_loss": tuple(
        {
            "form": (form,),
            "detach_weights": (True, False),
            **({"reduction": _first("mean_nonzero", _REDUCTIONS)} if form == "per_anchor" else {}),
            "margin": (0.4, 0.25),
            "scale": (80.0, 256.0, 128.0),
        }
        for form in metricloss.CIRCLE_FORMS
    ),
    "ntxent_loss": ({"temperature": _first(0.07, _TEMPERATURES), **_TEMPERATURE_SCALED},),
    "supcon_loss": ({"temperature": _first(0.1, _TEMPERATURES), **_TEMPERATURE_SCALED},),
    "lifted_structure_loss": ({"distance": _SYMMETRIC, "reduction": _REDUCTIONS, "margin": _first(1.0, _MARGINS)},),
    "generalized_lifted_structure_loss": (
        {
            "incomplete_anchors": metricloss.INCOMPLETE_ANCHORS,
            "distance": _SYMMETRIC,
            "reduction": _REDUCTIONS,
            "margin": _first(1.0, _MARGINS),
        },
    ),
    # α = 0.2 and β = 1.2, the paper's and PML's; β held constant (its gradient left out: _HELD_CONSTANT)
    "margin_loss": (
        {
            "distance": _SYMMETRIC,
            "reduction": _first("mean_nonzero", _REDUCTIONS),
            "margin": _first(0.2, _MARGINS),
            "beta": (1.2, 1.0),
        },
    ),
    # Sohn's dot product first; the cosine similarity is PML's default NPairsLoss() (its normalising dot product)
    "npair_loss": ({"similarity": _first("dot", metricloss.SIMILARITIES), "reduction": _REDUCTIONS},),
    # the batch's class means as the centres (learnable ones are not among the bank's inputs)
    "triplet_center_loss": (
        {
            "distance": _first("sqeuclidean", _SYMMETRIC),
            "halved": (True, False),
            "reduction": ("sum", "mean", "mean_nonzero"),
            "margin": (5.0, *_MARGINS),
        },
    ),
}


def _product(space):
    """Every combination of a dict of option → values, the first values first."""
    combos = [{}]
    for key, values in space.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def _search_space(name):
    """The documented options of a reference, as a list of settings, in the order tried."""
    if name not in SEARCH_SPACES:
        raise ValueError(f"identify knows the options of {', '.join(SEARCH_SPACES)}; got {name}")
    return [settings for space in SEARCH_SPACES[name] for settings in _product(space)]


@dataclass
class Identification:
    """What :func:`identify` found: ``matches``, the reports of the settings that agree on the most cases (best
    first; empty when no settings reproduce the candidate even on the screening cases), and ``tried``, the number
    of settings searched."""

    reference: str
    matches: list
    tried: int

    @property
    def settings(self):
        """The best settings (a dict), or None."""
        return self.matches[0].settings if self.matches else None

    def __str__(self):
        if not self.matches:
            return (
                f"no settings of {self.reference} among the {self.tried} searched reproduce the candidate "
                "(on the random batches already)"
            )
        lines = []
        for report in self.matches:
            args = ", ".join(f"{k}={v!r}" for k, v in report.settings.items())
            differing = report.differing()
            tail = "on every case" if not differing else "except on: " + ", ".join(differing)
            conventions = [o.case.name for o in report.outcomes if o.kind == "convention"]
            if conventions:
                tail += " (differs at a convention on: " + ", ".join(conventions) + ")"
            lines.append(f"your loss is {self.reference}({args}) {tail}")
        return "\n".join(lines)


def identify(candidate, reference_family, *, framework=None, seed=0, references=None, dtype=None, rtol=None, **fixed):
    """Search the documented options of ``reference_family`` for the settings that reproduce ``candidate``.

    Every combination of the family's documented options (``SEARCH_SPACES[reference_family]``, the options given
    in ``fixed`` left out) is first compared on the bank's random cases; the combinations that agree there are run
    on the whole bank, and those that differ on the fewest cases (then at the fewest conventions) are returned,
    each with the cases where they still differ. The continuous hyper-parameters are searched on a small grid of
    the documented defaults and the values the papers and pytorch-metric-learning use (the margins among 0.05,
    0.1, 0.2, 0.5, 1, 2; the temperatures among 0.05, 0.07, 0.1, 0.2, 0.5, 1): pass any other value in ``fixed``.
    The families and their options:

    * ``triplet_loss``: mining, soft (with margin 0 too), incomplete_anchors (hard mining), distance, reduction,
      margin;
    * ``contrastive_loss``, ``contrastive_pair_loss``: form, split_reduction, distance, reduction, margin;
    * ``triplet_margin_loss``: p in {2, 1, 3}, eps in {1e-6, 0}, swap, reduction, margin;
    * ``cosine_embedding_loss``, ``margin_ranking_loss``, ``hinge_embedding_loss``: reduction, margin;
    * ``multi_similarity_loss``: mining (``"epsilon"`` with epsilon 0.1), similarity, reduction, positive_scale 2,
      negative_scale in {50, 40}, threshold in {0.5, 1};
    * ``circle_loss``: form, detach_weights, reduction (``"per_anchor"``: ``"all_pairs"`` is one term), margin in
      {0.4, 0.25}, scale in {80, 256, 128};
    * ``ntxent_loss``, ``supcon_loss``: temperature, similarity, reduction;
    * ``lifted_structure_loss``: distance, reduction, margin; ``generalized_lifted_structure_loss`` also
      incomplete_anchors;
    * ``margin_loss``: distance, reduction, margin, beta in {1.2, 1} (held constant: its gradient is not compared);
    * ``npair_loss``: similarity, reduction;
    * ``triplet_center_loss`` (the batch's class means as the centres): distance, halved, reduction, margin
      (5 too).

    Parameters
    ----------
    candidate, framework, seed, references, dtype, rtol
        As for :func:`check`.
    reference_family : str
        The metricloss loss whose options are searched, a key of ``SEARCH_SPACES``.
    **fixed
        Settings known in advance (``margin=0.3``): not searched.

    Returns
    -------
    Identification

    Raises
    ------
    ValueError
        For a loss without a search space (the message lists the families).

    Examples
    --------
    >>> import functools
    >>> import metricloss
    >>> from metricloss.conformance import identify
    >>> mine = functools.partial(metricloss.hinge_embedding_loss, margin=2.0, reduction="sum")
    >>> print(identify(mine, "hinge_embedding_loss"))
    your loss is hinge_embedding_loss(reduction='sum', margin=2.0) on every case
    """
    fn, _ = _reference(reference_family)
    _check_settings(fn, fixed)
    space = [{**{k: v for k, v in s.items() if k not in fixed}, **fixed} for s in _search_space(fn.__name__)]
    space = list({tuple(sorted(s.items(), key=lambda kv: kv[0])): s for s in space}.values())  # fixed keys repeat
    checker = _Checker(candidate, fn, framework, seed, references, dtype, fixed)
    screening = [c for c in checker.cases if c.name.startswith("random")]
    survivors = [s for s in space if checker.report(s, screening, rtol).agrees]
    reports = [checker.report(s, rtol=rtol) for s in survivors]
    if reports:  # the fewest cases that differ, then the fewest that differ at a convention
        rank = {id(r): (len(r.differing()), r.counts["convention"]) for r in reports}
        best = min(rank.values())
        reports = [r for r in reports if rank[id(r)] == best]
    return Identification(fn.__name__, reports, len(space))


# ---------------------------------------------------------------------------------------------------------------
# The command


def load(target):
    """The object named by ``"package.module:attribute"`` or ``"path/to/file.py:attribute"`` (the attribute may
    be dotted)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not attribute:
        raise ValueError(f"the candidate must be given as module:attribute (e.g. mypkg.losses:my_loss); got {target!r}")
    if module_name.endswith(".py"):
        spec = importlib.util.spec_from_file_location("_conformance_candidate", module_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    obj = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _setting_value(text):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parse_settings(extra):
    settings, i = {}, 0
    while i < len(extra):
        if not extra[i].startswith("--"):
            raise ValueError(f"expected a --setting, got {extra[i]!r}")
        key, _, value = extra[i][2:].partition("=")
        key = key.replace("-", "_")
        if not value:
            if i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                value, i = extra[i + 1], i + 1
            else:
                value = "true"
        settings[key] = _setting_value(value)
        i += 1
    return settings


def main(argv=None):
    """``python -m metricloss.conformance module:candidate --against LOSS [--SETTING VALUE ...]``: exit status 0
    when the candidate agrees (or differs only at a convention), 1 when it disagrees, 2 on a usage error (an
    unknown setting, a candidate that cannot be loaded). With ``--identify``: 0 when some settings reproduce the
    candidate on every case, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m metricloss.conformance",
        description="Run a loss against metricloss over a bank of cases that break losses. Any other --name value "
        "is a setting of the reference (--mining hard --margin 0.5).",
    )
    parser.add_argument("candidate", help="module:attribute or file.py:attribute")
    parser.add_argument("--against", required=True, help="the metricloss loss, e.g. triplet_loss")
    parser.add_argument("--framework", choices=FRAMEWORKS, help="what computes the candidate (default: detected)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rtol", type=float)
    parser.add_argument("--dtype", choices=("float32", "float64"), help="cast every case to this dtype")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--identify", action="store_true", help="search the reference's options instead")
    args, extra = parser.parse_known_args(argv)
    try:
        settings = _parse_settings(extra)
        candidate = load(args.candidate)
        common = {"framework": args.framework, "seed": args.seed, "rtol": args.rtol, "dtype": args.dtype}
        if args.identify:
            found = identify(candidate, args.against, **common, **settings)
            if args.json:
                print(
                    json.dumps(
                        {
                            "reference": found.reference,
                            "tried": found.tried,
                            "matches": [{"settings": r.settings, "differs_on": r.differing()} for r in found.matches],
                        },
                        indent=2,
                    )
                )
            else:
                print(found)
            return 0 if found.matches and found.matches[0].agrees else 1
        report = check(candidate, args.against, **common, **settings)
    except (ValueError, TypeError, ImportError, AttributeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0 if report.agrees else 1


if __name__ == "__main__":
    sys.exit(main())
