"""Evaluation protocols on real data: recommendations (any catalogue, language slices, the
new-language protocol), topics, bitext and parallel retrieval."""

from xrec.evaluation.recs import evaluate_recs, format_report, plot_report
from xrec.evaluation.splits import Split, load_split

__all__ = ["Split", "evaluate_bitext", "evaluate_classifier", "evaluate_parallel", "evaluate_recs",
           "evaluate_topics", "format_report", "load_split", "plot_report"]

#: Entry points imported on first use (the topic and retrieval evaluations load torch and FAISS).
_LAZY = {"evaluate_topics": "xrec.evaluation.topics", "evaluate_classifier": "xrec.evaluation.topics",
         "evaluate_bitext": "xrec.evaluation.bitext", "evaluate_parallel": "xrec.evaluation.parallel"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xrec.evaluation' has no attribute {name!r}")
