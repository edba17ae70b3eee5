"""Text-level topic API: train a classifier from tables of texts, tag an items table."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from xrec.encoders.base import Encoder
from xrec.errors import ArtifactError, DataError
from xrec.topics.data import check_texts_column, labelled, languages_of
from xrec.topics.head import TopicClassifier
from xrec.topics.transfer import DEFAULT_METHOD, SelfTraining, TopicVectors, fit_topic_classifier

#: Prefix kind used to embed texts for classification (multilingual-e5's ``query: ``).
TEXT_KIND = "query"


def train_topics(encoder: Encoder, train: pl.DataFrame, labels: Sequence[str], *,
                 dev: pl.DataFrame | None = None, unlabelled: pl.DataFrame | None = None,
                 method: str = DEFAULT_METHOD, threshold: float = 0.5,
                 self_training: SelfTraining = SelfTraining(), source: str = "training data",
                 progress: bool | None = None) -> TopicClassifier:
    """Embed and train: ``train``/``dev`` hold ``text``, ``category`` (and optionally ``lang``);
    ``unlabelled`` holds ``text`` (and ``lang``) of the languages to transfer to (no labels used).
    """
    texts, y, langs = labelled(train, labels, source)
    train_v = TopicVectors(encoder.encode(texts, kind=TEXT_KIND, progress=progress), langs, y)
    dev_v = None
    if dev is not None and dev.height:
        d_texts, d_y, d_langs = labelled(dev, labels, f"{source} (dev)", min_classes=1)
        dev_v = TopicVectors(encoder.encode(d_texts, kind=TEXT_KIND, progress=progress), d_langs, d_y)
    unl_v = None
    if unlabelled is not None and unlabelled.height:
        u_texts = check_texts_column(unlabelled, f"{source} (unlabelled)")
        unl_v = TopicVectors(encoder.encode(u_texts, kind=TEXT_KIND, progress=progress),
                             languages_of(unlabelled))
    return fit_topic_classifier(labels, train_v, dev=dev_v, unlabelled=unl_v, method=method,
                                encoder_fingerprint=encoder.fingerprint, encoder_name=encoder.name,
                                text_kind=TEXT_KIND, threshold=threshold, self_training=self_training)


def check_encoder(classifier: TopicClassifier, encoder: Encoder, source: str = "topic model") -> None:
    """Raise :class:`ArtifactError` unless ``classifier`` was made with ``encoder``."""
    if classifier.encoder_fingerprint != encoder.fingerprint:
        raise ArtifactError(f"{source}: made with encoder {classifier.encoder_fingerprint} "
                            f"({classifier.encoder_name or 'unnamed'}), not with {encoder.name} "
                            f"({encoder.fingerprint}); retrain it with this encoder")


def tag_items(classifier: TopicClassifier, encoder: Encoder, items: pl.DataFrame, *,
              abstain: bool = False, source: str = "items", text_column: str = "text",
              progress: bool | None = None) -> pl.DataFrame:
    """``items`` with ``topic`` and ``topic_score`` (calibrated probability) added.

    Rows are centred by their ``lang`` column when there is one, else by the nearest language
    mean the model knows. With ``abstain``, ``topic`` is ``unknown`` below the model's threshold.
    """
    check_encoder(classifier, encoder)
    if items.height == 0:
        raise DataError(f"{source}: no items to tag")
    texts = check_texts_column(items, source, text_column)
    langs = languages_of(items) if "lang" in items.columns else None
    vectors = encoder.encode(texts, kind=classifier.text_kind, progress=progress)
    topics, scores = classifier.predict(vectors, langs, abstain=abstain)
    return items.with_columns(pl.Series("topic", topics, dtype=pl.String),
                              pl.Series("topic_score", scores, dtype=pl.Float32))
