"""Text-level topic API: train a classifier from tables of texts, tag an items table, give the
per-item topic distributions a ranker needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from xrec.catalogue.tables import require_columns
from xrec.encoders.base import Encoder, TextKind
from xrec.errors import ArtifactError, DataError
from xrec.topics.classifier import TopicClassifier, TopicPredictions
from xrec.topics.data import check_texts_column, labelled, languages_of
from xrec.topics.support import DEFAULT_SUPPORT_THRESHOLD
from xrec.topics.transfer import DEFAULT_METHOD, SelfTraining, TopicVectors, fit_topic_classifier

#: Prefix kind used to embed texts for classification (multilingual-e5's ``query: ``).
TEXT_KIND: TextKind = "query"


def train_topics(encoder: Encoder, train: pl.DataFrame, labels: Sequence[str], *,
                 dev: pl.DataFrame | None = None, unlabelled: pl.DataFrame | None = None,
                 method: str = DEFAULT_METHOD, threshold: float = 0.5,
                 support_threshold: float = DEFAULT_SUPPORT_THRESHOLD,
                 self_training: SelfTraining = SelfTraining(), source: str = "training data",
                 progress: bool | None = None, text_kind: TextKind = TEXT_KIND) -> TopicClassifier:
    """Embed and train: ``train``/``dev`` hold ``text``, ``category`` (and optionally ``lang``);
    ``unlabelled`` holds ``text`` (and ``lang``) of the languages to transfer to (no labels used).
    ``text_kind``: the prefix kind the texts are embedded with (``passage``: the head then tags
    vectors made for retrieval, e.g. a catalogue's, without embedding its texts again); the model
    records it.

    ``train`` may mix languages: many labels in one or a few languages and a handful in others.
    Languages with many labels teach every language; a language with a handful (fewer than
    :data:`~xrec.topics.transfer.SHARED_MIN_LABELS`, unless none has more) teaches its own texts
    only (see :func:`~xrec.topics.transfer.fit_topic_classifier`).
    """
    texts, y, langs = labelled(train, labels, source)
    train_v = TopicVectors(encoder.encode(texts, kind=text_kind, progress=progress), langs, y)
    dev_v = None
    if dev is not None and dev.height:
        d_texts, d_y, d_langs = labelled(dev, labels, f"{source} (dev)", min_classes=1)
        dev_v = TopicVectors(encoder.encode(d_texts, kind=text_kind, progress=progress), d_langs, d_y)
    unl_v = None
    if unlabelled is not None and unlabelled.height:
        u_texts = check_texts_column(unlabelled, f"{source} (unlabelled)")
        unl_v = TopicVectors(encoder.encode(u_texts, kind=text_kind, progress=progress),
                             languages_of(unlabelled, source=f"{source} (unlabelled)"))
    return fit_topic_classifier(labels, train_v, dev=dev_v, unlabelled=unl_v, method=method,
                                encoder_fingerprint=encoder.fingerprint, encoder_name=encoder.name,
                                text_kind=text_kind, threshold=threshold,
                                support_threshold=support_threshold, self_training=self_training)


def check_encoder(classifier: TopicClassifier, encoder: Encoder, source: str = "topic model") -> None:
    """Raise :class:`ArtifactError` unless ``classifier`` was made with ``encoder``."""
    if classifier.encoder_fingerprint != encoder.fingerprint:
        raise ArtifactError(f"{source}: made with encoder {classifier.encoder_fingerprint} "
                            f"({classifier.encoder_name or 'unnamed'}), not with {encoder.name} "
                            f"({encoder.fingerprint}); retrain it with this encoder")


def _predict_items(classifier: TopicClassifier, encoder: Encoder, items: pl.DataFrame, abstain: bool,
                   source: str, text_column: str, progress: bool | None,
                   vectors: np.ndarray | None = None) -> TopicPredictions:
    check_encoder(classifier, encoder)
    if items.height == 0:
        raise DataError(f"{source}: no items to tag")
    texts = check_texts_column(items, source, text_column)
    langs = languages_of(items, source=source) if "lang" in items.columns else None
    if vectors is None:
        vectors = encoder.encode(texts, kind=classifier.text_kind, progress=progress)
    elif vectors.shape != (items.height, classifier.dim):
        raise DataError(f"{source}: {items.height} items but vectors of shape {vectors.shape}, "
                        f"expected ({items.height}, {classifier.dim})")
    return classifier.predict(vectors, langs, abstain=abstain)


def tag_items(classifier: TopicClassifier, encoder: Encoder, items: pl.DataFrame, *,
              abstain: bool = False, source: str = "items", text_column: str = "text",
              progress: bool | None = None, vectors: np.ndarray | None = None) -> pl.DataFrame:
    """``items`` with ``topic``, ``topic_score`` and ``topic_support`` added.

    ``vectors``: the items' vectors when already embedded (same encoder, the classifier's
    ``text_kind``, row order), so that nothing is embedded twice.

    ``topic_score`` is the calibrated probability of ``topic`` among the model's labels (it
    assumes the item is about one of them); ``topic_support`` in [0, 1] says how well the
    labelled data covers the item (the share of held-out labelled texts that look less covered;
    null for a model trained without dev data), see :mod:`xrec.topics.support`. Rows are centred
    by their ``lang`` column when there is one, else by the nearest language mean the model
    knows. With ``abstain``, ``topic`` is ``unknown`` below either of the model's thresholds.
    """
    found = _predict_items(classifier, encoder, items, abstain, source, text_column, progress, vectors)
    support = pl.Series("topic_support", found.support, dtype=pl.Float32).fill_nan(None)
    return items.with_columns(pl.Series("topic", found.topics, dtype=pl.String),
                              pl.Series("topic_score", found.scores, dtype=pl.Float32), support)


@dataclass(frozen=True)
class ItemTopics:
    """Per-item topic distributions, for rankers and filters.

    ``proba[i]`` is item ``item_ids[i]``'s calibrated distribution over ``labels``; ``support[i]``
    its ``topic_support`` (NaN for a model trained without dev data). A ranker can use ``proba``
    as an item view (a user's topic affinity is then a weighted mean of the rows of the items the
    user chose), and weigh or drop rows of low ``support``, whose distribution means little.
    """

    labels: list[str]
    item_ids: list
    proba: np.ndarray
    support: np.ndarray


def item_topics(classifier: TopicClassifier, encoder: Encoder, items: pl.DataFrame, *,
                source: str = "items", text_column: str = "text",
                progress: bool | None = None) -> ItemTopics:
    """Topic distributions of ``items`` (``item_id``, ``text``, optional ``lang``), in row order."""
    require_columns(items, ["item_id"], source)
    found = _predict_items(classifier, encoder, items, False, source, text_column, progress)
    return ItemTopics(list(classifier.labels), items["item_id"].to_list(), found.proba, found.support)
