"""Cross-lingual topic tagging: learn topics from labelled items in one or a few languages, tag any language.

Entry points: :func:`train_topics` (tables of texts in, a :class:`TopicClassifier` out),
:func:`tag_items` and :func:`item_topics` (a fitted classifier over an items table),
:func:`topic_tables` (the tables of a SIB-200-style folder) and :meth:`TopicClassifier.load`.
"""

from xrec.topics.centering import LanguageCentering
from xrec.topics.classifier import UNKNOWN, TopicClassifier
from xrec.topics.data import TopicTables, topic_tables
from xrec.topics.head import HeadConfig, KernelHead, TopicHead, fit_head, fit_temperature
from xrec.topics.tagging import ItemTopics, item_topics, tag_items, train_topics
from xrec.topics.transfer import DEFAULT_METHOD, METHODS, fit_topic_classifier

__all__ = ["DEFAULT_METHOD", "METHODS", "UNKNOWN", "HeadConfig", "ItemTopics", "KernelHead", "LanguageCentering",
           "TopicClassifier", "TopicHead", "TopicTables", "fit_head", "fit_temperature", "fit_topic_classifier",
           "item_topics", "tag_items", "topic_tables", "train_topics"]
