"""Language codes in one system, and languages detected from text (see docs/languages.md).

Every language code xrec reads (a catalogue's ``lang`` column, a filter, a config value, a
request field) goes through :func:`normalise`: ``de``, ``deu``, ``deu_Latn``, ``de-DE`` and
``German`` all become ``de``. The result is a BCP 47 tag of a language subtag (ISO 639-1 where
there is one, else ISO 639-3; the dominant individual language of a macrolanguage becomes the
macrolanguage: ``arb`` -> ``ar``, ``cmn`` -> ``zh``) plus a script subtag only when the script
differs from the language's usual one (``zho_Hant`` -> ``zh-Hant``, ``sr-Latn`` stays, ``zho_Hans``
and ``sr-Cyrl`` become ``zh`` and ``sr``). Regions and variants are dropped (``pt-BR`` -> ``pt``).
``und`` (:data:`UNKNOWN`) is an item whose language is not known. A code or name that no
registry knows is a :class:`~xrec.errors.DataError` naming where it was read.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from typing import overload

import polars as pl

from xrec.catalogue.tables import first_row_where, locate
from xrec.errors import DataError

log = logging.getLogger(__name__)

#: The code of an item whose language is unknown (given as ``und``, or not detected).
UNKNOWN = "und"
#: Values of the ``lang_source`` column: where an item's ``lang`` came from.
GIVEN, DETECTED, NOT_FOUND = "given", "detected", "unknown"


@functools.lru_cache(maxsize=8192)
def _normalise(code: str) -> str | None:
    import langcodes

    text = code.strip().replace("_", "-")
    if not text:
        return None
    if text.lower() == UNKNOWN:
        return UNKNOWN
    try:
        language = langcodes.Language.get(langcodes.standardize_tag(text, macro=True))
        if language.is_valid() and not language.language:  # und-Latn
            return UNKNOWN
        if not language.is_valid():
            language = None
    except ValueError:  # langcodes' LanguageTagError is a ValueError
        language = None
    if language is None:  # a name: "German", "Deutsch", "Chinese (Traditional)"
        if len(text) < 4:  # too short to be a name ("xx"): fuzzy name matching would find one
            return None
        try:
            language = langcodes.find(text)
        except LookupError:
            return None
        language = langcodes.Language.get(langcodes.standardize_tag(str(language), macro=True))
    if not language.language:
        return UNKNOWN
    script = language.maximize().script if language.script or language.territory else None
    usual = _usual_script(language.language)
    keep = script and usual and _PART_OF.get(script, script) != usual
    return language.language + (f"-{script}" if keep else "")


#: Scripts that are part of a language's usual combined script (Korean ``Kore``, Japanese ``Jpan``).
_PART_OF = {"Hang": "Kore", "Jamo": "Kore", "Hira": "Jpan", "Kana": "Jpan", "Hrkt": "Jpan"}


def _usual_script(language: str) -> str | None:
    """The script CLDR's likely subtags give ``language``; None when CLDR has none for it."""
    import langcodes
    from langcodes.data_dicts import LIKELY_SUBTAGS

    likely = LIKELY_SUBTAGS.get(language)
    return langcodes.Language.get(likely).script if likely else None


def normalise(code: str, where: str = "language") -> str:
    """``code`` (a BCP 47 tag, an ISO 639-1/-3 code, a Flores ``deu_Latn`` code or an English or
    native language name) as xrec's one code system (module doc); :class:`DataError` naming
    ``where`` when no registry knows it."""
    found = _normalise(code) if isinstance(code, str) else None
    if found is None:
        raise DataError(f"{where}: {code!r} is not a language code or name that xrec knows; use a BCP 47 "
                        "or ISO 639 code such as 'de', 'deu' or 'deu_Latn', or a name such as 'German' "
                        f"(or {UNKNOWN!r} for an unknown language)")
    return found


@overload
def normalise_all(codes: None, where: str = ...) -> None: ...
@overload
def normalise_all(codes: Iterable[str] | str, where: str = ...) -> list[str]: ...
def normalise_all(codes: Iterable[str] | str | None, where: str = "languages") -> list[str] | None:
    """:func:`normalise` of each code (a single string counts as one code), order kept, repeats
    dropped; None stays None."""
    if codes is None:
        return None
    codes = [codes] if isinstance(codes, str) else list(codes)
    return list(dict.fromkeys(normalise(c, where) for c in codes))


def display_name(code: str) -> str:
    """The English name of a normalised code (``zh-Hant`` -> ``Chinese (Traditional)``)."""
    import langcodes

    return "unknown" if code == UNKNOWN else langcodes.Language.get(code).display_name()


@overload
def item_codes(languages: None, where: str = ...) -> None: ...
@overload
def item_codes(languages: Iterable[str | None], where: str = ...) -> list[str | None]: ...
def item_codes(languages: Iterable[str | None] | None, where: str = "languages") -> list[str | None] | None:
    """Per-item codes for the APIs that take one language per item (None, ``""`` and ``und``:
    unknown, as None); a code no registry knows is a :class:`DataError` naming its row."""
    if languages is None:
        return None
    out: list[str | None] = []
    for row, code in enumerate(languages):
        if code is None or (isinstance(code, str) and not code.strip()):
            out.append(None)
            continue
        if not isinstance(code, str):
            raise DataError(f"{where}: row {row}: {code!r} is not a language code string")
        found = _normalise(code) or normalise(code, f"{where}: row {row}")  # the latter raises
        out.append(None if found == UNKNOWN else found)
    return out


@overload
def filter_codes(languages: None, where: str) -> None: ...
@overload
def filter_codes(languages: Iterable[str] | str, where: str) -> list[str]: ...
def filter_codes(languages: Iterable[str] | str | None, where: str) -> list[str] | None:
    """The codes of a language filter (``languages``, ``exclude_languages``, ``--lang``...),
    normalised; ``und`` stands for the items of unknown language."""
    if languages is not None and not isinstance(languages, str):
        languages = list(languages)
        for value in languages:
            if not isinstance(value, str):
                raise DataError(f"{where}: {value!r} is not a language code string")
    return normalise_all(languages, where)


def item_languages(frame: pl.DataFrame, source: str, text_column: str = "text",
                   column: str = "lang") -> pl.DataFrame:
    """``frame`` with ``lang`` normalised (null: unknown) and ``lang_source`` (:data:`GIVEN`,
    :data:`DETECTED` or :data:`NOT_FOUND`): a missing column, a null or blank code is detected
    from the text (:func:`detect`); a code no registry knows is a :class:`DataError` naming the
    file and line. The catalogue-reading layer calls this once; everything after it sees one
    code system."""
    if column in frame.columns:
        raw = frame[column]
        if raw.dtype not in (pl.String, pl.Null):
            raise DataError(f"{source}: column {column!r} must hold language codes (strings), found {raw.dtype}")
        langs = normalise_codes(frame, source, column)[column]
    else:
        langs = pl.Series(column, [None] * frame.height, dtype=pl.String)
    given = langs.is_not_null()
    langs = langs.set((langs == UNKNOWN).fill_null(False), None)
    sources = pl.Series("lang_source", [GIVEN] * frame.height, dtype=pl.String)
    todo = (~given).to_numpy()
    if todo.any():
        import numpy as np

        rows = np.flatnonzero(todo)
        texts = frame[text_column].fill_null("").to_list()
        found = detect([texts[i] for i in rows])
        values, kinds = langs.to_list(), sources.to_list()
        for i, code in zip(rows.tolist(), found):
            values[i] = None if code == UNKNOWN else code
            kinds[i] = NOT_FOUND if code == UNKNOWN else DETECTED
        langs, sources = pl.Series(values, dtype=pl.String), pl.Series(kinds, dtype=pl.String)
        _log_detected(source, len(rows), frame.height, values, kinds, column in frame.columns)
    return frame.with_columns(langs.alias(column), sources.alias("lang_source"))


def _log_detected(source: str, n_missing: int, n: int, values: list, kinds: list, had_column: bool) -> None:
    from collections import Counter

    detected = Counter(v for v, k in zip(values, kinds) if k == DETECTED)
    unknown = sum(k == NOT_FOUND for k in kinds)
    what = f"{n_missing} of {n} items have no {'lang' if had_column else 'lang column'}"
    top = ", ".join(f"{code} {count}" for code, count in detected.most_common(8))
    log.info("%s: %s: %d detected from the text (%s), %d left unknown (und)", source, what,
             sum(detected.values()), top or "none", unknown)


def normalise_codes(frame: pl.DataFrame, source: str, column: str = "lang") -> pl.DataFrame:
    """``frame`` with the codes of ``column`` normalised (nulls and blanks: null; a data set's own codes,
    e.g. SIB-200's ``deu_Latn``, become ``de``); a code no registry knows is a :class:`DataError`
    naming the file and line."""
    codes = frame[column].cast(pl.String).str.strip_chars()
    codes = codes.set((codes == "").fill_null(False), None)
    mapping = {}
    for code in codes.drop_nulls().unique(maintain_order=True).to_list():
        found = _normalise(code)
        if found is None:
            row = first_row_where(frame, (codes == code).fill_null(False))
            normalise(code, f"{source}: {locate(source, row)}: {column}")
        mapping[code] = found
    return frame.with_columns(codes.replace_strict(mapping, default=None, return_dtype=pl.String).alias(column))


#: Below this probability (normalised over the library's languages) a text's language is unknown.
MIN_CONFIDENCE = 0.5
#: Texts with fewer letters than this are left unknown (too short to tell).
MIN_LETTERS = 4
_LETTER = re.compile(r"[^\W\d_]")


@functools.lru_cache(maxsize=1)
def _identifier():
    import py3langid.langid as langid

    return langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)


def detect(texts: Sequence[str]) -> list[str]:
    """The language of each text as a normalised code, :data:`UNKNOWN` (``und``) when the text
    has fewer than :data:`MIN_LETTERS` letters or the identifier is less sure than
    :data:`MIN_CONFIDENCE` (short or mixed texts). The identifier is py3langid's bundled model
    (no download; chosen in benchmarks/README.md, "Language identification")."""
    identifier = _identifier()
    out = []
    for text in texts:
        text = (text or "").replace("\n", " ")
        if len(_LETTER.findall(text)) < MIN_LETTERS:
            out.append(UNKNOWN)
            continue
        code, confidence = identifier.classify(text)
        found = _normalise(code) if confidence >= MIN_CONFIDENCE else None
        out.append(found or UNKNOWN)
    return out
