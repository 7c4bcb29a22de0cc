"""Global configuration, as scikit-learn keeps it: :func:`set_config`, :func:`get_config`, :func:`config_context`.

``working_memory`` is the memory, in MiB, that a batch loss may use for its pairwise matrix (the distances of a
block of anchor rows against every candidate, and the cotangent written over them) and the arrays of its size that
the loss's per-row math holds at the same time (each loss says how many: one for the triplet, contrastive, lifted
and margin losses, two for NT-Xent, SupCon and multiple-negatives ranking, three for multi-similarity, five for
circle). A batch whose arrays fit runs as one block, as it always has; a larger one runs in blocks of anchor rows,
each block's rows of D computed (in the memory of the block before), used and pulled back before the next, so that
its memory is O(block · R) instead of O(B · R). The default, 1024 MiB, is scikit-learn's: a float32 batch of
B = R = 16,384 is one block for the triplet loss, and B = 65,536 runs in blocks of 4,096 rows instead of one 16 GiB
matrix (of 1,365 rows for multi-similarity). docs/benchmarks.md measures each loss's peak.
"""

import contextlib
import contextvars
import math

_DEFAULTS = {"working_memory": 1024.0}
_config = contextvars.ContextVar("metricloss_config", default=_DEFAULTS)


def get_config():
    """The current configuration, as a new dict.

    Returns
    -------
    config : dict
        ``{"working_memory": MiB}``.

    Examples
    --------
    >>> import metricloss
    >>> metricloss.get_config()["working_memory"]
    1024.0
    """
    return dict(_config.get())


def _checked_working_memory(value):
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"working_memory must be a finite number of MiB > 0; got {value!r}")
    return float(value)


def set_config(working_memory=None):
    """Set metricloss's configuration; arguments left at None keep their value.

    Parameters
    ----------
    working_memory : float, optional
        The MiB a batch loss may use for its block of the pairwise matrix (default 1024, as scikit-learn's):
        batches whose B×R matrix needs more run in blocks of anchor rows.

    Returns
    -------
    None

    Examples
    --------
    >>> import metricloss
    >>> metricloss.set_config(working_memory=256)
    >>> metricloss.get_config()["working_memory"]
    256.0
    >>> metricloss.set_config(working_memory=1024)
    """
    config = dict(_config.get())
    if working_memory is not None:
        config["working_memory"] = _checked_working_memory(working_memory)
    _config.set(config)


@contextlib.contextmanager
def config_context(*, working_memory=None):
    """Within the ``with`` block, the configuration set as :func:`set_config` sets it; restored after.

    Parameters
    ----------
    working_memory : float, optional
        As in :func:`set_config`.

    Returns
    -------
    context : context manager

    Examples
    --------
    >>> import numpy as np
    >>> import metricloss
    >>> x, labels = np.random.default_rng(0).standard_normal((64, 8)), np.arange(64) % 16
    >>> with metricloss.config_context(working_memory=0.01):  # blocks of 20 anchor rows (20 · 64 · 8 bytes)
    ...     in_blocks = metricloss.triplet_loss(x, labels)[0]
    >>> bool(np.isclose(in_blocks, metricloss.triplet_loss(x, labels)[0], rtol=1e-12))
    True
    """
    token = _config.set(dict(_config.get()))
    try:
        set_config(working_memory=working_memory)
        yield
    finally:
        _config.reset(token)
