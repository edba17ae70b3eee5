"""The catalogue layer: items and interactions tables read, checked and handed upward.

Everything xrec reads about a team's catalogue passes through here once, so ranking, evaluation,
jobs and serving receive validated tables and arrays (none of them re-checks, and nothing here
imports them):

* :mod:`~xrec.catalogue.tables`: reading parquet, CSV and JSON-lines files; errors name the
  file and the line or row (:func:`~xrec.catalogue.tables.locate`);
* :mod:`~xrec.catalogue.ids`: the one rule for item and user ids;
* :mod:`~xrec.catalogue.languages`: language codes in one system, and languages detected from text;
* :mod:`~xrec.catalogue.templates`: item text rendered from an items table's fields;
* :mod:`~xrec.catalogue.items`: an items table checked (ids, texts, languages);
* :mod:`~xrec.catalogue.interactions`: an interactions table checked, the id maps, the user x
  item matrix and the held-out splits.
"""

from xrec.catalogue.interactions import (
    IdMap,
    InteractionReport,
    Interactions,
    random_split,
    read_interactions,
    temporal_split,
    validate_interactions,
)
from xrec.catalogue.items import load_items, prepare_items, validate_items
from xrec.catalogue.languages import normalise
from xrec.catalogue.tables import read_table
from xrec.catalogue.templates import render_template

__all__ = ["IdMap", "InteractionReport", "Interactions", "load_items", "normalise", "prepare_items",
           "random_split", "read_interactions", "read_table", "render_template", "temporal_split",
           "validate_interactions", "validate_items"]
