"""The compiled walk of a tree ensemble laid out by engine/forest.py: numba-compiled, serial, and free of the GIL.

Each tree is stored complete to its own depth, so the children of slot j are slots 2j+1 (the branch taken when
x <= threshold, or when x is NaN and NaN goes left) and 2j+2, and a row's walk is arithmetic on j with no child
pointer to load. A block of rows walks one tree level by level, so the loads of different rows overlap. Scores are
added in the input's type (float32 or float64) in tree order, as onnxruntime's single-threaded TreeEnsemble adds them.
Compiled once per machine and type (numba's cache beside this file); callers run it on several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

BLOCK_ROWS = 256  # rows walked together: enough loads in flight, the walk's slots still in L1


def _walk(
    x: np.ndarray,
    offsets: np.ndarray,
    depths: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    nan_left: np.ndarray,
    track_nan: bool,
    leaf_offsets: np.ndarray,
    weights: np.ndarray,
    out: np.ndarray,
) -> None:
    """Add each tree's leaf weights for each row of x [rows, features] into out [rows, targets]; without `track_nan`
    (no branch sends NaN left) the NaN test, a third of the walk's time, is left out: x <= t already sends NaN right."""
    rows, targets = x.shape[0], weights.shape[1]
    slot = np.empty(BLOCK_ROWS, np.int64)
    for start in range(0, rows, BLOCK_ROWS):
        block = min(BLOCK_ROWS, rows - start)
        for t in range(offsets.shape[0]):
            base = offsets[t]
            slot[:block] = 0
            for _ in range(depths[t]):
                if track_nan:
                    for r in range(block):
                        j = slot[r]
                        v = x[start + r, feature[base + j]]
                        slot[r] = 2 * j + 2 - np.int64((v <= threshold[base + j]) | ((nan_left[base + j] != 0) & (v != v)))
                else:
                    for r in range(block):
                        j = slot[r]
                        slot[r] = 2 * j + 2 - np.int64(x[start + r, feature[base + j]] <= threshold[base + j])
            first_leaf = leaf_offsets[t] - (2 ** depths[t] - 1)
            for r in range(block):
                leaf = first_leaf + slot[r]
                for k in range(targets):
                    out[start + r, k] += weights[leaf, k]


def _compiled(function: Callable[..., None]) -> Callable[..., None]:
    """`function` compiled by numba, its machine code cached beside this file (or in the user's cache directory); where
    neither can be written (a read-only install, a Spark executor without a home), compiled afresh in each process."""
    try:
        return njit(nogil=True, cache=True)(function)
    except RuntimeError:  # numba's "cannot cache function ...: no locator available"
        return njit(nogil=True)(function)


walk = _compiled(_walk)
