"""In-place edits of FAISS IVF inverted lists, keeping each list's ids ascending.

Segment ids only ever grow, so each list stays sorted by id: retention then trims each list's head
with one binary search, and a time range maps to an id range. FAISS has no such edits itself.
"""

from __future__ import annotations

import faiss
import numpy as np


def list_ids(index: faiss.IndexIVF, lst: int) -> np.ndarray:
    """A view (no copy) of one inverted list's ids; only valid until the list changes."""
    return faiss.rev_swig_ptr(index.invlists.get_ids(lst), index.invlists.list_size(lst))


def list_vectors(index: faiss.IndexIVF, lst: int) -> np.ndarray:
    size = index.invlists.list_size(lst)
    codes = faiss.rev_swig_ptr(index.invlists.get_codes(lst), size * index.code_size)
    return codes.view(np.float32).reshape(size, index.d)


def trim_ivf(index: faiss.IndexIVF, cut: int) -> int:
    """Drop ids below ``cut`` from every list, keeping each list's order (ids ascending)."""
    inv, removed = index.invlists, 0
    for lst in range(index.nlist):
        size = inv.list_size(lst)
        if not size:
            continue
        ids = list_ids(index, lst)
        m = int(np.searchsorted(ids, cut))
        if not m:
            continue
        if m < size:
            ids[:size - m] = ids[m:]  # numpy copes with the overlap
            codes = faiss.rev_swig_ptr(inv.get_codes(lst), size * index.code_size)
            codes[:(size - m) * index.code_size] = codes[m * index.code_size:]
        inv.resize(lst, size - m)
        removed += m
    index.ntotal -= removed
    return removed


def move_id(index: faiss.IndexIVF, serial: int, vector: np.ndarray) -> None:
    """Replace one id's vector: out of the list it is in, into its new list at its sorted place."""
    inv, size_of = index.invlists, index.code_size
    for lst in range(index.nlist):
        ids = list_ids(index, lst)
        j = int(np.searchsorted(ids, serial))
        if j < len(ids) and ids[j] == serial:
            n = len(ids)
            codes = faiss.rev_swig_ptr(inv.get_codes(lst), n * size_of)
            ids[j:n - 1] = ids[j + 1:].copy()
            codes[j * size_of:(n - 1) * size_of] = codes[(j + 1) * size_of:].copy()
            inv.resize(lst, n - 1)
            break
    else:
        raise KeyError(serial)
    lst = int(index.quantizer.search(vector, 1)[1][0, 0])
    n = inv.list_size(lst)
    inv.resize(lst, n + 1)
    ids = list_ids(index, lst)
    codes = faiss.rev_swig_ptr(inv.get_codes(lst), (n + 1) * size_of)
    j = int(np.searchsorted(ids[:n], serial))
    ids[j + 1:] = ids[j:n].copy()
    codes[(j + 1) * size_of:] = codes[j * size_of:n * size_of].copy()
    ids[j] = serial
    codes[j * size_of:(j + 1) * size_of] = vector.view(np.uint8).ravel()
