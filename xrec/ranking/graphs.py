"""Item-item similarity graphs: sparse ``[n_items, n_items]`` matrices with each item's nearest items.

A user's score from a graph is the sum, over the user's history, of the edges into an item
(``history @ graph``), so a graph carries evidence from the items a user has read to the items they
have not: items close in the multilingual embedding space (:func:`vector_knn`), items sharing
character n-grams such as an author's name or a series title (:func:`sparse_knn` over
:func:`xrec.ranking.lexical.char_tfidf`), items sharing a metadata key such as the same author
(:func:`group_graph`), and items co-consumed by the same users (:func:`cf_knn`, implicit's BM25
item-item model). Content graphs are symmetrised (an edge in either item's top-k counts for both),
so a new German edition is reached from the English one as well as the other way round.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def zeros(n_rows: int, n_cols: int) -> sp.csr_matrix:
    """An all-zero float32 ``[n_rows, n_cols]`` CSR matrix."""
    # scipy-stubs types the shape-only constructor as float64 only
    return sp.csr_matrix((n_rows, n_cols), dtype=np.float32)  # pyright: ignore[reportCallIssue, reportArgumentType]


def symmetric(graph: sp.csr_matrix) -> sp.csr_matrix:
    """``max(graph, graph.T)``: an edge in either direction counts for both."""
    return graph.maximum(graph.T).tocsr()


def _from_topk(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> sp.csr_matrix:
    keep = (cols >= 0) & (cols != rows) & (vals > 0)
    graph = sp.csr_matrix((vals[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(n, n))
    graph.sum_duplicates()
    return graph


#: Catalogues above this many items get their embedding graph from an HNSW index: exact search
#: costs items² (1M items: about 85 min on 2 cores), HNSW about items x log(items).
EXACT_KNN_MAX = 200_000


def vector_knn(vectors: np.ndarray, k: int = 50, *, batch: int = 4096,
               exact_max: int = EXACT_KNN_MAX) -> sp.csr_matrix:
    """Each item's ``k`` nearest items by inner product of unit vectors, positive similarities
    only, symmetrised. Zero vectors (items without text) get no edges. Exact FAISS search up to
    ``exact_max`` items, FAISS HNSW (32 links, search breadth 2k) above."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = x.shape[0]
    if n < 2:
        return zeros(n, n)
    if n <= exact_max:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.hnsw.efSearch = max(2 * k, 64)
    index.add(x)
    kk = min(k + 1, n)
    rows, cols, vals = [], [], []
    for start in range(0, n, batch):
        scores, found = index.search(x[start:start + batch], kk)
        rows.append(np.repeat(np.arange(start, start + len(found)), kk))
        cols.append(found.reshape(-1))
        vals.append(scores.reshape(-1))
    empty = ~np.asarray(x.any(axis=1), dtype=bool)
    graph = _from_topk(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), n)
    if empty.any():
        graph = (sp.diags((~empty).astype(np.float32)) @ graph).tocsr()
    return symmetric(graph)


def sparse_knn(x: sp.csr_matrix, k: int = 50, *, batch: int = 2000) -> sp.csr_matrix:
    """Each row's ``k`` nearest rows by inner product of L2-normalised sparse rows, symmetrised."""
    x = x.tocsr().astype(np.float32)
    n = x.shape[0]
    xt = x.T.tocsc()
    rows, cols, vals = [], [], []
    for start in range(0, n, batch):
        block = (x[start:start + batch] @ xt).toarray()
        block[np.arange(len(block)), np.arange(start, start + len(block))] = 0.0
        kk = min(k, n - 1) if n > 1 else 0
        if kk == 0:
            break
        part = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        rows.append(np.repeat(np.arange(start, start + len(block)), kk))
        cols.append(part.reshape(-1))
        vals.append(np.take_along_axis(block, part, 1).reshape(-1))
    if not rows:
        return zeros(n, n)
    return symmetric(_from_topk(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), n))


def normalise_key(value: str | None) -> str:
    """A metadata key for matching across editions: accents folded, lower case, letters and
    digits only (``"J. K. Rowling"`` and ``"J.K. ROWLING"`` both give ``"jkrowling"``)."""
    if not value:
        return ""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", folded)


def group_graph(keys: Sequence[str | None], *, max_group: int = 200) -> sp.csr_matrix:
    """Items sharing a normalised key are linked (weight 1). Empty keys, and keys shared by more
    than ``max_group`` items (``"unknown"``, ``"various"``), link nothing."""
    norm = np.array([normalise_key(k) for k in keys], dtype=object)
    n = len(norm)
    if not n:
        return zeros(0, 0)
    uniq, inverse = np.unique(norm, return_inverse=True)
    member = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), inverse)), shape=(n, len(uniq)))
    sizes = np.asarray(member.sum(axis=0)).ravel()
    useful = np.flatnonzero((sizes >= 2) & (sizes <= max_group) & (uniq != ""))
    member = member[:, useful]
    graph = (member @ member.T).tocsr()
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    return graph


def cf_knn(history: sp.csr_matrix, k: int = 100, *, threads: int = 0) -> sp.csr_matrix:
    """Item-item BM25 similarities from co-consumption (implicit's ``BM25Recommender``)."""
    import warnings

    from implicit.nearest_neighbours import BM25Recommender

    model = BM25Recommender(K=k, num_threads=threads)
    binary = history.tocsr().astype(np.float32)
    binary.data[:] = 1.0
    with warnings.catch_warnings():  # implicit converts its own BM25-weighted copy and warns about it
        warnings.simplefilter("ignore")
        model.fit(binary, show_progress=False)
    graph = sp.csr_matrix(model.similarity, dtype=np.float32)  # pyright: ignore[reportCallIssue, reportArgumentType]
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    return graph


def language_split(graph: sp.csr_matrix, codes: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(same, cross)``: the edges between items of one language and those across languages.

    ``codes`` ``[n_items]`` int language codes (-1: unknown language; its edges count as cross)."""
    coo = graph.tocoo()
    same = (codes[coo.row] == codes[coo.col]) & (codes[coo.row] >= 0)
    part = lambda keep: sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])),  # noqa: E731
                                      shape=graph.shape, dtype=np.float32)
    return part(same), part(~same)


def row_normalised(graph: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled to sum 1 (empty rows stay empty)."""
    sums = np.asarray(graph.sum(axis=1)).ravel()
    return (sp.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ graph).tocsr()


def extend_knn(graph: sp.csr_matrix, sims: np.ndarray, k: int) -> sp.csr_matrix:
    """``graph`` (``[n_old, n_old]``, a symmetrised top-``k`` graph) grown by the new items whose
    similarities to every item (old, then new) are the rows of ``sims`` ``[n_new, n_old + n_new]``,
    as if built with them: each new item's ``k`` nearest items (positive similarities, not
    itself), and an edge from an old item to a new one where the new one would enter the old
    item's top ``k`` among its edges and the other new items (edges the new items would push out
    of that top ``k`` are kept). Symmetrised like the graph."""
    n_old = graph.shape[0]
    n_new, n = sims.shape
    graph = graph.tocsr()
    grown = sp.csr_matrix((graph.data, graph.indices, np.concatenate(
        [graph.indptr, np.full(n_new, graph.indptr[-1], dtype=graph.indptr.dtype)])), shape=(n, n))
    if not n_new:
        return grown
    own = sims.astype(np.float32, copy=True)
    own[np.arange(n_new), n_old + np.arange(n_new)] = -np.inf
    kk = min(k, n - 1)
    if kk < 1:
        return grown
    part = np.argpartition(-own, kk - 1, axis=1)[:, :kk]
    out = _from_topk(np.repeat(np.arange(n_old, n), kk), part.reshape(-1),
                     np.take_along_axis(own, part, 1).reshape(-1), n)
    # the k-th largest edge of each old row: a new item beating it enters that row's top k
    lengths = np.diff(graph.indptr)
    threshold = np.zeros(n_old, dtype=np.float32)
    for row in np.flatnonzero(lengths >= k):
        values = graph.data[graph.indptr[row]:graph.indptr[row + 1]]
        threshold[row] = np.partition(values, len(values) - k)[len(values) - k]
    into = own[:, :n_old].T  # [n_old, n_new]
    hit_row, hit_col = np.nonzero((into > threshold[:, None]) & (into > 0))
    keep = np.ones(len(hit_row), dtype=bool)
    starts = np.flatnonzero(np.r_[True, hit_row[1:] != hit_row[:-1]]) if len(hit_row) else np.zeros(0, int)
    for lo, hi in zip(starts, np.r_[starts[1:], len(hit_row)]):
        if hi - lo < 2:
            continue  # one new item beating the k-th edge is in the top k
        row = hit_row[lo]
        values = graph.data[graph.indptr[row]:graph.indptr[row + 1]]
        new_values = into[row, hit_col[lo:hi]]
        # rank of each new item among the row's old edges and the other new items
        above = (values[None, :] > new_values[:, None]).sum(axis=1) + \
            (new_values[None, :] > new_values[:, None]).sum(axis=1)
        keep[lo:hi] = above < k
    hit_row, hit_col = hit_row[keep], hit_col[keep]
    incoming = sp.csr_matrix((into[hit_row, hit_col].astype(np.float32), (hit_row, hit_col + n_old)),
                             shape=(n, n))
    return symmetric((grown.maximum(out).maximum(incoming)).tocsr())
