"""The compiled walks of a tree ensemble laid out by engine/forest.py: numba-compiled, serial, and free of the GIL.

Each tree is stored complete to its own depth, so the children of slot j are slots 2j+1 (the branch taken when
x <= threshold, or when x is NaN and NaN goes left) and 2j+2, and a row's walk is arithmetic on j with no child
pointer to load. A block of rows walks one tree level by level, so the loads of different rows overlap. Scores are
added in the input's type (float32 or float64) in tree order, as onnxruntime's single-threaded TreeEnsemble adds them.
Compiled once per machine and type (numba's cache beside this file); callers run it on several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

lowest_bit = cast(Callable[[Any], int], trailing_zeros)  # numba's count of trailing zero bits (one instruction)

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


def _bitvector_walk(
    x: np.ndarray,
    cuts: np.ndarray,
    cut_offsets: np.ndarray,
    masks: np.ndarray,
    mask_offsets: np.ndarray,
    readers: np.ndarray,
    reader_offsets: np.ndarray,
    leaf_offsets: np.ndarray,
    weights: np.ndarray,
    out: np.ndarray,
) -> None:
    """Add each tree's leaf weights for each row of x [rows, features] into out [rows, targets], the exit leaves found
    by bitvectors (engine/forest.py's Bitvectors): per feature a binary search for the row's bin, one AND per tree
    reading the feature, then each tree's lowest bit left."""
    trees, targets = leaf_offsets.shape[0], weights.shape[1]
    left = np.empty(trees, np.uint64)
    for r in range(x.shape[0]):
        left[:] = ~np.uint64(0)
        for f in range(cut_offsets.shape[0] - 1):
            v = x[r, f]
            first, n = cut_offsets[f], cut_offsets[f + 1] - cut_offsets[f]
            b = n + 1  # NaN's bin
            if v == v:  # how many cuts lie below v
                b, span = 0, n
                while span > 0:
                    half = span // 2
                    if cuts[first + b + half] < v:
                        b += half + 1
                        span -= half + 1
                    else:
                        span = half
            reading = reader_offsets[f + 1] - reader_offsets[f]
            row, tree = mask_offsets[f] + b * reading, reader_offsets[f]
            for j in range(reading):
                left[readers[tree + j]] &= masks[row + j]
        for t in range(trees):
            leaf = leaf_offsets[t] + lowest_bit(left[t])
            for k in range(targets):
                out[r, k] += weights[leaf, k]


def _compiled(function: Callable[..., None]) -> Callable[..., None]:
    """`function` compiled by numba, its machine code cached beside this file (or in the user's cache directory); where
    neither can be written (a read-only install, a Spark executor without a home), compiled afresh in each process."""
    try:
        return njit(nogil=True, cache=True)(function)
    except RuntimeError:  # numba's "cannot cache function ...: no locator available"
        return njit(nogil=True)(function)


walk = _compiled(_walk)
bitvector_walk = _compiled(_bitvector_walk)
