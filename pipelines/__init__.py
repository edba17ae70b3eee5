"""Batch jobs composed from xrec's public API (see ``main_job``)."""
