"""Cross-lingual topic tagging: learn topics from labelled items in one or a few languages, tag any language."""

from xrec.topics.centering import LanguageCentering
from xrec.topics.head import UNKNOWN, HeadConfig, KernelHead, TopicClassifier, TopicHead, fit_head, fit_temperature

__all__ = ["UNKNOWN", "HeadConfig", "KernelHead", "LanguageCentering", "TopicClassifier", "TopicHead",
           "fit_head", "fit_temperature"]
