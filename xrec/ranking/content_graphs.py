"""Interaction-free item-item graphs of a catalogue (embedding, lexical, metadata) and its item languages.

Built once per catalogue (:meth:`ContentGraphs.build`), shared by the validation fit and the final
ranker, grown with the catalogue (:meth:`ContentGraphs.extend`); the graphs themselves are in
:mod:`xrec.ranking.graphs`, the features made of them in :mod:`xrec.ranking.views`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import scipy.sparse as sp

from xrec.ranking import graphs as g


@dataclass
class ContentGraphs:
    """Interaction-free item-item graphs (embedding, lexical, metadata) and item languages.

    Built once per catalogue (:meth:`build`) and shared by the validation fit and the final ranker."""

    graphs: dict[str, sp.csr_matrix]
    language_codes: np.ndarray  #: ``[n_items]`` int, -1 where unknown
    languages: list[str]  #: code -> language
    #: item texts (the lexical graph's input; kept so that :meth:`extend` can link new items)
    texts: list[str] | None = None
    #: metadata values per field (the metadata graphs' input, kept for :meth:`extend`)
    metadata: dict[str, list[str | None]] | None = None
    k: int = 50  #: neighbours per item of the kNN graphs
    topic_codes: np.ndarray | None = None  #: ``[n_items]`` int item topics, -1 where none (None: no tags)
    topic_names: list[str] = dataclass_field(default_factory=list)  #: code -> topic
    topic_scores: np.ndarray | None = None  #: ``[n_items]`` float32 ``topic_score`` (1 where not given)
    #: ``[n_items, vocabulary]`` character n-gram TF-IDF of ``texts``, unit rows
    #: (:func:`~xrec.ranking.lexical.char_tfidf`)
    terms: sp.csr_matrix | None = None

    @classmethod
    def build(cls, item_vectors: np.ndarray, *, texts: Sequence[str] | None = None,
              languages: Sequence[str | None] | None = None,
              metadata: Mapping[str, Sequence[str | None]] | None = None, k: int = 50,
              topics: Sequence[str | None] | None = None,
              topic_scores: Sequence[float | None] | None = None) -> ContentGraphs:
        """Embedding kNN of ``item_vectors``; lexical kNN of ``texts``; a group graph per
        ``metadata`` field (e.g. ``{"author": [...]}``); each split by language when known.
        ``topics`` (and ``topic_scores``), one per item, are kept for the topic features."""
        from xrec.ranking.lexical import char_tfidf, without_frequent

        n = item_vectors.shape[0]
        raw = {"embedding": g.vector_knn(item_vectors, k)}
        terms, texts = None, None if texts is None else [str(t) for t in texts]
        if texts is not None:
            terms = char_tfidf(texts)
            # n-grams in more than 1% of the items (at least 50) say little and cost most of the time
            raw["lexical"] = g.sparse_knn(without_frequent(terms, min(1.0, max(0.01, 50 / max(n, 1)))), k)
        for field, keys in (metadata or {}).items():
            raw[f"meta_{field}"] = g.group_graph(keys)
        codes, names = np.full(n, -1, dtype=np.int64), []
        if languages is not None:
            langs = np.array(["" if x is None else str(x) for x in languages], dtype=object)
            names, inverse = np.unique(langs, return_inverse=True)
            codes = np.where(langs == "", -1, inverse).astype(np.int64)
            names = names.tolist()
        out = cls(raw, codes, names, texts,
                  None if metadata is None else {f: [None if x is None else str(x) for x in v]
                                                 for f, v in metadata.items()}, k, terms=terms)
        return out.with_topics(topics, topic_scores) if topics is not None else out

    def with_topics(self, topics: Sequence[str | None], scores: Sequence[float | None] | None = None
                    ) -> ContentGraphs:
        """A copy whose items carry ``topics`` (one per item; None: none) and ``scores``."""
        from dataclasses import replace

        from xrec.errors import DataError
        from xrec.ranking.topical import encode_topics

        if len(topics) != len(self.language_codes):
            raise DataError(f"topics: {len(topics)} values for {len(self.language_codes)} items")
        codes, names, given = encode_topics(topics, scores)
        return replace(self, topic_codes=codes, topic_names=names, topic_scores=given)

    def extend(self, vectors: np.ndarray, n_new: int, *, texts: Sequence[str] | None = None,
               languages: Sequence[str | None] | None = None,
               metadata: Mapping[str, Sequence[str | None]] | None = None,
               topics: Sequence[str | None] | None = None,
               topic_scores: Sequence[float | None] | None = None) -> ContentGraphs:
        """The graphs grown by ``n_new`` items appended to the catalogue (``vectors``: every
        item's vector, the new ones last), as :meth:`build` would link them
        (:func:`~xrec.ranking.graphs.extend_knn`; the metadata graphs are rebuilt, they are
        cheap). The lexical graph links the new items only when the catalogue's texts are
        kept (a ranker built with ``texts``) and ``texts`` are given; otherwise they get no
        lexical edges (logged). ``topics`` tag the new items (new topic names are appended)."""
        import logging

        from xrec.ranking.lexical import char_tfidf, without_frequent

        n = vectors.shape[0]
        n_old = n - n_new
        graphs = {}
        texts_all = None if self.texts is None else self.texts + (
            [str(t) for t in texts] if texts is not None else [""] * n_new)
        # recomputed over every text (the vocabulary and idf move with the catalogue)
        terms = char_tfidf(texts_all) if texts_all is not None and texts is not None else None
        for name, graph in self.graphs.items():
            if name == "embedding":
                new = np.asarray(vectors[n_old:], dtype=np.float32)
                sims = np.vstack([new[s:s + 512] @ vectors.T for s in range(0, n_new, 512)]) if n_new else \
                    np.zeros((0, n), np.float32)
                graphs[name] = g.extend_knn(graph, sims, self.k)
            elif name == "lexical":
                if self.texts is None or texts is None:
                    logging.getLogger(__name__).warning(
                        "new items: no lexical edges (the ranker keeps no texts, or none were given)")
                    graphs[name] = g.extend_knn(graph, np.zeros((n_new, n), np.float32), self.k)
                    continue
                assert terms is not None  # the texts were given and kept
                x = without_frequent(terms, min(1.0, max(0.01, 50 / max(n, 1))))
                sims = (x[n_old:] @ x.T).toarray() if n_new else np.zeros((0, n), np.float32)
                graphs[name] = g.extend_knn(graph, sims, self.k)
            elif name.startswith("meta_"):
                field = name[len("meta_"):]
                old_keys = (self.metadata or {}).get(field)
                if old_keys is None:
                    graphs[name] = g.extend_knn(graph, np.zeros((n_new, n), np.float32), self.k)
                    continue
                added = list((metadata or {}).get(field, [None] * n_new))
                graphs[name] = g.group_graph(old_keys + added)
            else:
                graphs[name] = g.extend_knn(graph, np.zeros((n_new, n), np.float32), self.k)
        names = list(self.languages)
        codes = list(self.language_codes)
        for lang in (languages if languages is not None else [None] * n_new):
            if lang is None or str(lang) == "":
                codes.append(-1)
                continue
            if str(lang) not in names:
                names.append(str(lang))
            codes.append(names.index(str(lang)))
        meta_all = None if self.metadata is None else {
            f: v + [None if x is None else str(x) for x in (metadata or {}).get(f, [None] * n_new)]
            for f, v in self.metadata.items()}
        if terms is None and self.terms is not None:  # new items without texts: no lexical evidence
            terms = sp.vstack([self.terms, g.zeros(n_new, self.terms.shape[1])]).tocsr()
        out = ContentGraphs(graphs, np.asarray(codes, dtype=np.int64), names, texts_all, meta_all, self.k,
                            terms=terms)
        if self.topic_codes is None and topics is None:
            return out
        from xrec.ranking.topical import encode_topics

        new_codes, topic_names, new_scores = encode_topics(
            list(topics) if topics is not None else [None] * n_new, topic_scores, self.topic_names)
        old_codes = self.topic_codes if self.topic_codes is not None else np.full(n_old, -1, np.int64)
        old_scores = self.topic_scores if self.topic_scores is not None else np.ones(n_old, np.float32)
        out.topic_codes = np.concatenate([old_codes, new_codes])
        out.topic_names = topic_names
        out.topic_scores = np.concatenate([old_scores, new_scores]).astype(np.float32)
        return out

    @property
    def has_topics(self) -> bool:
        return self.topic_codes is not None and bool((self.topic_codes >= 0).any())

    @property
    def has_languages(self) -> bool:
        return bool((self.language_codes >= 0).any()) and len(set(self.language_codes[self.language_codes >= 0])) > 1

    def split(self) -> dict[str, sp.csr_matrix]:
        """Graph features: each graph split into ``_same`` / ``_cross`` language edges when the
        catalogue has several languages, else whole."""
        if not self.has_languages:
            return dict(self.graphs)
        out = {}
        for name, graph in self.graphs.items():
            out[f"{name}_same"], out[f"{name}_cross"] = g.language_split(graph, self.language_codes)
        return out

    def neighbours(self) -> sp.csr_matrix:
        """Row-normalised sum of the content graphs (each item's content neighbourhood)."""
        n = len(self.language_codes)
        total = sum((g.row_normalised(x) for x in self.graphs.values()), g.zeros(n, n))
        return g.row_normalised(total.tocsr())
