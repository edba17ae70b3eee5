"""Evaluation protocols on real data: recommendations (any catalogue, language slices, the
new-language protocol), topics, bitext and parallel retrieval."""

from xrec.evaluation.recs import evaluate_recs, format_report, plot_report
from xrec.evaluation.splits import Split, load_split

__all__ = ["Split", "evaluate_recs", "format_report", "load_split", "plot_report"]
