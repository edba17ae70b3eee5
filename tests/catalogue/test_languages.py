"""Languages, optional and normalised (issue 25): one code system everywhere, missing codes
detected from the text, unknown codes a clear error, filters that never pass unknown languages
silently."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.interactions import Interactions
from xrec.catalogue.items import load_items
from xrec.catalogue.languages import DETECTED, GIVEN, NOT_FOUND, detect, item_codes, normalise, normalise_codes
from xrec.cli.main import main
from xrec.errors import ArtifactError, DataError
from xrec.index import VectorIndex
from xrec.index.neighbours import search_by_language

GERMAN = "Die Regierung hat am Montag neue Regeln für den öffentlichen Verkehr in der Stadt beschlossen."
ENGLISH = "The government approved new rules for public transport in the city on Monday."
FRENCH = "Le gouvernement a adopté lundi de nouvelles règles pour les transports publics de la ville."


@pytest.mark.parametrize("code", ["de", "deu", "deu_Latn", "German", "Deutsch", "de-DE", "DE", " ger "])
def test_every_spelling_of_german_is_de(code):
    assert normalise(code) == "de"


@pytest.mark.parametrize(("code", "want"), [
    ("zho_Hans", "zh"), ("zh-Hans", "zh"), ("cmn", "zh"), ("zho_Hant", "zh-Hant"), ("zh-TW", "zh-Hant"),
    ("sr-Cyrl", "sr"), ("sr-Latn", "sr-Latn"), ("arb_Arab", "ar"), ("arz_Arab", "arz"), ("kor_Hang", "ko"),
    ("pt-BR", "pt"), ("iw", "he"), ("und", "und"), ("UND", "und"), ("Chinese (Traditional)", "zh-Hant")])
def test_scripts_macrolanguages_and_regions(code, want):
    assert normalise(code) == want


@pytest.mark.parametrize("code", ["xx-Klingon", "xx", "films", "", "123"])
def test_unknown_code_is_an_error_naming_where(code):
    with pytest.raises(DataError, match=r"^--lang: .* is not a language code or name that xrec knows"):
        normalise(code, "--lang")
    if code:  # a blank per-item code is an unknown language, not an error
        with pytest.raises(DataError, match=r"languages: row 1: .* not a language code"):
            item_codes(["de", code], "languages")


def test_item_codes_blank_and_und_are_unknown():
    assert item_codes(["deu", None, "", "und", "French"]) == ["de", None, None, None, "fr"]


def _write(tmp_path, rows: list[dict], name: str = "items.csv"):
    path = tmp_path / name
    pl.DataFrame(rows).write_csv(path)
    return path


def test_catalogue_mixing_systems_and_missing_codes(tmp_path):
    rows = [{"item_id": i, "text": t, "lang": lang} for i, (t, lang) in enumerate([
        (GERMAN, "de"), (GERMAN + " Ja.", "deu"), (GERMAN + " Nein.", "German"), (FRENCH, "fra_Latn"),
        (ENGLISH, None), (FRENCH + " Oui.", " "), ("", None), ("42", None), (ENGLISH + " Yes.", "und")])]
    items = load_items(_write(tmp_path, rows))
    assert items["lang"].to_list() == ["de", "de", "de", "fr", "en", "fr", None, None, None]
    assert items["lang_source"].to_list() == [GIVEN] * 4 + [DETECTED] * 2 + [NOT_FOUND] * 2 + [GIVEN]


def test_catalogue_without_lang_column_is_detected(tmp_path):
    items = load_items(_write(tmp_path, [{"item_id": 1, "text": GERMAN}, {"item_id": 2, "text": ENGLISH}]))
    assert items["lang"].to_list() == ["de", "en"] and set(items["lang_source"]) == {DETECTED}


def test_catalogue_unknown_code_names_file_and_line(tmp_path):
    rows = [{"item_id": 1, "text": GERMAN, "lang": "de"}, {"item_id": 2, "text": ENGLISH, "lang": "xx-Klingon"}]
    path = _write(tmp_path, rows)
    with pytest.raises(DataError, match=r"items.csv: line 3: lang: 'xx-Klingon' is not a language code"):
        load_items(path)


def test_detect_keeps_short_and_empty_texts_unknown():
    found = detect([GERMAN, ENGLISH, FRENCH, "", "   ", "42 %", "ok"])
    assert found[:3] == ["de", "en", "fr"]
    assert found[3:] == ["und"] * 4


@pytest.fixture(scope="module")
def index():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8)).astype(np.float32)
    return VectorIndex.build(x, [1, 2, 3, 4, 5, 6], ["de", "deu_Latn", "German", "fr", None, "und"], kind="exact")


def test_index_stores_one_system_and_filters_by_any_spelling(index):
    assert index.language_set == ["de", "fr"] and index.languages == ["de", "de", "de", "fr", None, None]
    q = index.vectors_of([1])
    ids, _ = index.search(q, 6, languages="deu_Latn")
    assert sorted(ids[0][ids[0] >= 0]) == [1, 2, 3]
    ids, _ = index.search(q, 6, exclude_languages=["German"])
    assert sorted(ids[0][ids[0] >= 0]) == [4]  # the unknown-language items 5 and 6 are left out too
    assert index.unknown_left_out(exclude_languages=["German"]) == 2
    ids, _ = index.search(q, 6, languages=["fr", "und"])
    assert sorted(ids[0][ids[0] >= 0]) == [4, 5, 6]
    assert index.unknown_left_out(languages=["fr", "und"]) == 0
    with pytest.raises(DataError, match=r"exclude_languages: 'xx-Klingon' is not a language code"):
        index.search(q, 3, exclude_languages=["xx-Klingon"])


def test_other_languages_skips_unknown_items_and_queries(index):
    vectors = index.vectors_of([1, 5])
    ids, scores = search_by_language(index, vectors, index.language_of([1, 5]), 6)
    assert sorted(ids[0][ids[0] >= 0]) == [4]  # fr only: not de, not unknown
    assert (ids[1] == -1).all() and np.isneginf(scores[1]).all()  # unknown query: no other language


def test_old_index_format_says_rebuild(index, tmp_path):
    index.save(tmp_path / "index")
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    manifest["format_version"] = 1
    (tmp_path / "index" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format_version 1, this xrec reads 2; rebuild"):
        VectorIndex.load(tmp_path / "index")


def test_cli_unknown_code_is_the_same_error(tmp_path, capsys):
    items = _write(tmp_path, [{"item_id": 1, "text": GERMAN, "lang": "de"}])
    assert main(["similar", "--items", str(items), "--text", "Wahlen", "--other-languages",
                 "--lang", "xx-Klingon"]) == 2
    assert "--lang: 'xx-Klingon' is not a language code" in capsys.readouterr().err
    inter = tmp_path / "interactions.csv"
    inter.write_text("user_id,item_id\n1,1\n")
    assert main(["recommend", "--items", str(items), "--interactions", str(inter), "--out",
                 str(tmp_path / "r.parquet"), "--exclude-languages", "xx-Klingon"]) == 2
    assert "--exclude-languages: 'xx-Klingon' is not a language code" in capsys.readouterr().err
    items.write_text(f"item_id,text,lang\n1,{GERMAN},de\n2,{ENGLISH},xx-Klingon\n")
    assert main(["recommend", "--items", str(items), "--interactions", str(inter), "--out",
                 str(tmp_path / "r.parquet")]) == 2
    assert "items.csv: line 3: lang: 'xx-Klingon' is not a language code" in capsys.readouterr().err


def test_serve_fields_normalise_and_reject_unknown_codes():
    from xrec.serve.schema import Fields, RequestError

    fields = Fields({"languages": ["deu_Latn", "German", "fr"], "lang": "fra"},
                    ("languages", "lang"))
    assert fields.languages("languages") == ["de", "fr"] and fields.language_text("lang") == "fr"
    with pytest.raises(RequestError) as bad:
        Fields({"languages": ["de", "xx-Klingon"]}, ("languages",)).languages("languages")
    assert bad.value.status == 422 and bad.value.field == "languages[1]"
    assert "languages[1]: 'xx-Klingon' is not a language code" in str(bad.value)


def test_topic_tables_detect_missing_codes(tmp_path):
    from xrec.topics.data import languages_of, select_languages

    frame = pl.DataFrame({"text": [GERMAN, ENGLISH, FRENCH], "lang": ["deu_Latn", None, ""]})
    assert languages_of(frame, source="unlabelled.csv") == ["de", "en", "fr"]
    assert select_languages(frame, ["German"], "t")["text"].to_list() == [GERMAN]
    with pytest.raises(DataError, match="t: language 'en' has no rows"):
        select_languages(frame, ["eng_Latn"], "t")


def test_ranker_filters_take_any_spelling_and_leave_out_unknown_languages():
    from xrec.ranking.cf import fit_als
    from xrec.ranking.hybrid import HybridRanker

    rng = np.random.default_rng(0)
    langs = ["de", "deu", "German", "fr", "fra_Latn", "French", None, "und", "en", "eng_Latn", "en", "de"]
    ids = list(range(1, len(langs) + 1))
    pairs = pl.DataFrame({"user_id": np.repeat(np.arange(20), 4),
                          "item_id": rng.integers(1, len(ids) + 1, 80)}).unique()
    ranker = HybridRanker.fit(Interactions.build(pairs, pl.Series(ids)),
                              rng.normal(size=(len(ids), 16)).astype(np.float32), languages=langs,
                              cf_fit=lambda m: fit_als(m, factors=4)[0])
    assert [n for n in ranker.content.languages if n] == ["de", "en", "fr"]
    row = np.array([0])
    assert ranker.language_mask(row, languages=["deu_Latn"]).astype(int).tolist() == [1, 1, 1] + [0] * 8 + [1]
    # excluding French also leaves out the two items of unknown language; "und" keeps them
    assert ranker.language_mask(row, exclude_languages=["French"]).astype(int).tolist() == \
        [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert ranker.language_mask(row, languages=["de", "und"]).astype(int).tolist() == \
        [1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1]
    history = ranker.language_mask(np.array([0, 1]), language_policy="history")
    assert not history[:, 6:8].any()  # unknown languages are no user's language
    with pytest.raises(DataError, match="languages: 'xx-Klingon' is not a language code"):
        ranker.recommend([0], languages=["xx-Klingon"])


def test_mixed_language_code_systems_become_one():
    frame = pl.DataFrame({"lang": ["de", "en", "und", "pt-BR", "deu_Latn"], "text": ["a"] * 5})
    assert normalise_codes(frame, "items.csv")["lang"].to_list() == ["de", "en", "und", "pt", "de"]
