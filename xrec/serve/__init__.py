"""``xrec serve``: an HTTP JSON service over a saved index (and optionally a ranker and topic model).

:class:`Service` is the library (validation, micro-batched encoding, search, reload);
:func:`create_app` the Starlette app over it; :func:`serve` runs it with uvicorn within a
:class:`Guard`'s bounds (docs/operations.md).
"""

from xrec.serve.guard import Guard
from xrec.serve.schema import Limits, RequestError
from xrec.serve.server import create_app, serve
from xrec.serve.service import Service

__all__ = ["Guard", "Limits", "RequestError", "Service", "create_app", "serve"]
