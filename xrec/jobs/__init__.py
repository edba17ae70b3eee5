"""Jobs that compose the library end to end, run by ``xrec run`` from a TOML job definition.

The definitions (TOML) live in the top-level ``pipelines/`` folder; the code that runs them
lives here: :mod:`~xrec.jobs.config` (the typed schema and loader), :mod:`~xrec.jobs.catalogue`
(the items and interactions tables, and which stages they can feed), :mod:`~xrec.jobs.main_job`
(the stages in order), :mod:`~xrec.jobs.stages` and :mod:`~xrec.jobs.neighbours` (stage bodies of
more than one library call) and :mod:`~xrec.jobs.report` (the Markdown report).
"""

from xrec.jobs.config import DEFAULT as DEFAULT_CONFIG
from xrec.jobs.config import load_config, validate_config
from xrec.jobs.main_job import run as run_main_job

__all__ = ["DEFAULT_CONFIG", "load_config", "run_main_job", "validate_config"]
