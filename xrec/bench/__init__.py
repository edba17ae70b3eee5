"""Speed measurements against named peers, side by side in one run.

Entry points, one per ``xrec`` benchmark command: :func:`run_encoder_bench` (``xrec bench encoder``),
:func:`run_retrieval_bench` (``xrec bench retrieval``), :func:`run_recommend_bench`
(``xrec bench recommend``) and :func:`run_serve_bench` (``xrec bench serve``).
"""

__all__ = ["run_encoder_bench", "run_recommend_bench", "run_retrieval_bench", "run_serve_bench"]

#: Entry points imported on first use (each loads torch, FAISS or a server).
_LAZY = {"run_encoder_bench": "xrec.bench.encoder", "run_recommend_bench": "xrec.bench.recommend",
         "run_retrieval_bench": "xrec.bench.retrieval", "run_serve_bench": "xrec.bench.serve"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xrec.bench' has no attribute {name!r}")
