"""The id rule (xrec.catalogue.ids) where ids meet: a catalogue's type decides, values beyond it are unknown."""

from __future__ import annotations

import polars as pl
import pytest
from xrec.catalogue.ids import as_type_of, id_value
from xrec.catalogue.interactions import Interactions, read_interactions
from xrec.catalogue.tables import read_table
from xrec.errors import DataError


def test_one_non_numeric_interaction_id_is_the_only_unknown(tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,text\n" + "".join(f"{i},text {i}\n" for i in range(1, 31)), encoding="utf-8")
    inter = tmp_path / "interactions.csv"
    rows = [f"{u},{i}" for u in range(1, 6) for i in range(1, 21)] + ["6,abc"]
    inter.write_text("user_id,item_id\n" + "\n".join(rows) + "\n", encoding="utf-8")
    catalogue = read_table(items)["item_id"]
    with pytest.raises(DataError, match=r"1 row\(s\) name items not in the catalogue \(e.g. \['abc'\]\)"):
        Interactions.build(read_interactions(inter), catalogue, source=str(inter))
    built = Interactions.build(read_interactions(inter), catalogue, source=str(inter), drop_unknown=True)
    assert built.report.dropped == 1 and built.matrix.nnz == 100


def test_integer_ids_beyond_64_bits_are_refused_or_unknown():
    with pytest.raises(ValueError, match="beyond the 64-bit range"):
        id_value(10**30, True)  # a request's id: an error naming it
    assert id_value(-(2**63), True) == -(2**63) and id_value(10**30, False) == str(10**30)
    assert as_type_of(pl.Series([10**30, 5, -(10**30)]), pl.Int64).to_list() == [None, 5, None]  # a table's: unknown
