"""The contract registry: every public loss, once per configuration, with what the ladder in ``test_contract.py``
needs to test it (``REGISTRY``).

``core`` holds the kinds of arguments, ``LossCase``, the helpers that build cases, and the cases of the pair losses
and the triplet family; each later family keeps its cases, oracles and literals in a module of its own beside it.
Adding a loss means adding cases: the ladder then runs on them.
"""

from . import center, infonce, lifted, margin, modern, npair, quadruplet, warp
from .core import (
    BINARY,
    CENTERS,
    CLASS_PARAMS,
    DIFFERENTIABLE,
    EMBEDDINGS,
    FEATURE_ROWS,
    INDEXED_BY_LABELS,
    LABELS,
    RELEVANCE,
    SCORE_MATRIX,
    SCORES,
    SIGNS,
    LossCase,
)
from .core import CASES as _CORE_CASES

REGISTRY = [
    *_CORE_CASES,
    *center.CASES,
    *npair.CASES,
    *quadruplet.CASES,
    *lifted.CASES,
    *warp.CASES,
    *modern.CASES,
    *infonce.CASES,
    *margin.CASES,
]
REGISTRY_IDS = [case.id for case in REGISTRY]

__all__ = [
    "BINARY",
    "CENTERS",
    "CLASS_PARAMS",
    "DIFFERENTIABLE",
    "EMBEDDINGS",
    "FEATURE_ROWS",
    "INDEXED_BY_LABELS",
    "LABELS",
    "REGISTRY",
    "REGISTRY_IDS",
    "RELEVANCE",
    "SCORES",
    "SCORE_MATRIX",
    "SIGNS",
    "LossCase",
]
