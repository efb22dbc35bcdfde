"""An independent numpy implementation of the documented cost matrix: the oracle the tests check
``modelrouter.cost_matrix`` against, and the peer the benchmarks time it against."""

from __future__ import annotations

import numpy as np

DEFAULT_WEIGHTS = (0.6, 0.3, 0.1, 0.0)


def numpy_cost_matrix(
    required: np.ndarray,
    capabilities: np.ndarray,
    preferred: np.ndarray | None = None,
    min_context: np.ndarray | None = None,
    context_window: np.ndarray | None = None,
    cost_per_1k: np.ndarray | None = None,
    weights: tuple[float, float, float, float] = DEFAULT_WEIGHTS,
) -> np.ndarray:
    """The documented score, vectorised: 1 − score, +inf where infeasible."""
    w_req, w_pref, w_ctx, w_cost = weights
    n, m = required.shape[0], capabilities.shape[0]
    mask = required > 0
    shortfall = (required[:, None, :] > capabilities[None, :, :]).any(axis=2)
    n_req = mask.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        req = np.where(n_req > 0, (mask @ capabilities.T) / np.maximum(n_req, 1), 1.0)
        if preferred is None:
            pref = np.ones((n, m))
        else:
            total = preferred.sum(axis=1, keepdims=True)
            safe_total = np.where(total > 0, total, 1)
            pref = np.where(total > 0, (preferred @ capabilities.T) / safe_total, 1.0)
    ctx_need = np.zeros(n) if min_context is None else min_context
    window = np.full(m, np.inf) if context_window is None else context_window
    ctx = np.where(ctx_need[:, None] > 0, 1.0 - ctx_need[:, None] / window[None, :], 1.0)
    too_small = window[None, :] < ctx_need[:, None]
    if cost_per_1k is None or cost_per_1k.max() == 0:
        price = np.zeros((1, m))
    else:
        price = (cost_per_1k / cost_per_1k.max())[None, :]
    score = w_req * req + w_pref * pref + w_ctx * ctx - w_cost * price
    return np.where(shortfall | too_small, np.inf, 1.0 - score)
