"""Cross-lingual topic evaluation on a SIB-200 folder: zero-shot, few-shot, several sources.

Trains on the train split of one or more source languages (their dev splits for model selection
and calibration) plus, with ``shots``, a few labelled train texts of every other language; may read
the unlabelled ``text`` of the other languages' remaining train texts (never their labels, never
test text), and reports test accuracy and macro-F1 for every language in the folder. With labels
held out of training it measures ``topic_support`` as an out-of-distribution signal.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from xrec.datasets.sib200 import load_labels, load_split
from xrec.encoders.base import Encoder, TextKind
from xrec.errors import DataError
from xrec.store import StoredEmbeddings, encoder_path_of, read_trusted, text_hash, write_embeddings
from xrec.topics.classifier import TopicClassifier
from xrec.topics.data import check_texts_column, labelled, topic_tables
from xrec.topics.tagging import TEXT_KIND
from xrec.topics.transfer import DEFAULT_METHOD, SelfTraining, TopicVectors, fit_topic_classifier

log = logging.getLogger(__name__)

#: The SIB-200 paper's bar: languages under this accuracy are counted (``languages_under_70``).
UNDER = 0.70


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true`` or ``y_pred``."""
    scores = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def embed_split(encoder: Encoder, frame: pl.DataFrame, cache: str | os.PathLike[str] | None,
                split: str, progress: bool | None = None, kind: TextKind = TEXT_KIND) -> np.ndarray:
    """Vectors of ``frame['text']`` (rows of one SIB-200 split) embedded as ``kind``, in row order.

    With ``cache``, each language's vectors live in ``{split}_{lang}.parquet`` there
    (``{split}.{kind}_{lang}.parquet`` for a kind other than ``query``; an embedding store keyed by
    ``index_id``); the file grows to the union of every row asked for so far, so a later run with
    other samples of the same split embeds only rows not seen before, all of them in one encoder call.
    """
    texts = check_texts_column(frame, f"{split} split")
    if cache is None:
        return encoder.encode(texts, kind=kind, progress=progress)
    name = split if kind == TEXT_KIND else f"{split}.{kind}"
    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    out = np.empty((frame.height, encoder.dim), dtype=np.float32)
    langs = np.asarray(frame["lang"].to_list(), dtype=object)
    ids = frame["index_id"].to_list()
    hashes = [text_hash(t, kind) for t in texts]
    stored: dict[str, StoredEmbeddings | None] = {}
    todo: list[int] = []
    for lang in dict.fromkeys(langs.tolist()):
        path = root / f"{name}_{lang}.parquet"
        old = read_trusted(path, encoder)
        stored[lang] = old
        known = {} if old is None else {(i, h): r for r, (i, h) in enumerate(zip(old.ids, old.text_hashes))}
        for row in np.flatnonzero(langs == lang):
            hit = known.get((ids[row], hashes[row]))
            if hit is None or old is None:
                todo.append(int(row))
            else:
                out[row] = old.vectors[hit]
    if todo:
        log.info("%s split: embedding %d of %d texts (%d reused from %s)", split, len(todo),
                 frame.height, frame.height - len(todo), root)
        out[todo] = encoder.encode([texts[r] for r in todo], kind=kind, progress=progress)
    for lang in dict.fromkeys(langs[todo].tolist()):
        rows = np.flatnonzero(langs == lang)
        new = {ids[r]: r for r in rows}
        old = stored[lang]
        keep = [] if old is None else [r for r, i in enumerate(old.ids) if i not in new]
        kept_ids: list = []  # ids of one type (the split's), as the store keeps them
        kept_vectors, kept_hashes = np.zeros((0, encoder.dim), np.float32), []
        if old is not None and keep:
            kept_ids, kept_vectors = [old.ids[r] for r in keep], old.vectors[keep]
            kept_hashes = [old.text_hashes[r] for r in keep]
        write_embeddings(root / f"{name}_{lang}.parquet", kept_ids + [ids[r] for r in rows],
                         np.concatenate([kept_vectors, out[rows]]), encoder.fingerprint,
                         kept_hashes + [hashes[r] for r in rows], encoder_path_of(encoder))
    return out


def _quarter(values: Sequence[float]) -> float:
    """Mean of the lowest quarter (at least one value) of ``values``; NaN when empty."""
    ordered = np.sort(np.asarray(values, dtype=float))
    return float(ordered[: max(1, len(ordered) // 4)].mean()) if len(ordered) else float("nan")


def _ood_report(found, known: np.ndarray, codes: np.ndarray, threshold: float) -> dict:
    """AUROC of ``topic_support`` (and of ``topic_score``) for telling texts of trained topics
    (``known``) from texts of held-out ones, pooled and per language, and abstain rates."""
    from sklearn.metrics import roc_auc_score

    if known.all() or not known.any():
        raise DataError("the held-out topics have no test rows")
    if np.isnan(found.support).any():
        raise DataError("no topic_support without a dev split of the training language(s)")
    per_lang = {}
    for lang in sorted(set(codes.tolist())):
        rows = codes == lang
        if 0 < known[rows].sum() < rows.sum():
            per_lang[lang] = float(roc_auc_score(known[rows], found.support[rows]))
    refused = found.support < threshold
    return {
        "auroc_support": float(roc_auc_score(known, found.support)),
        "auroc_score": float(roc_auc_score(known, found.scores)),
        "auroc_support_by_lang": per_lang,
        "auroc_support_mean": float(np.mean(list(per_lang.values()))),
        "auroc_support_weakest_quarter": _quarter(list(per_lang.values())),
        "support_threshold": threshold,
        "abstained_known": float(refused[known].mean()),
        "abstained_held_out": float(refused[~known].mean()),
    }


#: Keys of the result of :func:`evaluate_topics`, in the order the JSON shows them.
RESULT_KEYS = ("train_lang", "train_langs", "method", "shots", "seed", "hold_out", "languages", "mean_accuracy",
               "train_lang_accuracy", "weakest_quarter_accuracy", "languages_under_70", "n_languages",
               "unlabelled_per_lang", "encoder_fingerprint", "fit_seconds", "ood", "bitext", "total_seconds")


def evaluate_topics(encoder: Encoder, data_dir: str | os.PathLike[str], train_lang: str | Sequence[str], *,
                    method: str = DEFAULT_METHOD, shots: int = 0, unlabelled_per_lang: int = 100,
                    hold_out: Sequence[str] = (), self_training: SelfTraining = SelfTraining(),
                    seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                    bitext: dict | None = None) -> dict:
    """Train on the labels of ``train_lang`` (one code or several) and test on every language of
    ``data_dir`` (:func:`evaluate_classifier`); returns the JSON dict of ``xrec evaluate topics``.

    ``shots``: every other language also gives that many labelled train texts per label (see
    :func:`~xrec.topics.data.few_shot_split`); its other train texts are only ever read unlabelled
    and its test split is untouched. ``hold_out``: labels left out of training; their test texts
    then measure ``topic_support`` as an out-of-distribution signal (``"ood"`` in the result), and
    accuracy is over the other labels' texts. ``bitext``: a result of ``xrec evaluate bitext`` whose
    languages carry ``flores_code``; their ``xx2en`` accuracy is put beside the topic accuracy
    (``"bitext"``). Accuracy summaries (mean, weakest quarter, languages under :data:`UNDER`) are
    over the languages not in ``train_lang``.
    """
    started = time.perf_counter()
    tables = topic_tables(data_dir, train_lang, shots=shots, unlabelled_per_lang=unlabelled_per_lang, seed=seed)
    sources = [train_lang] if isinstance(train_lang, str) else list(dict.fromkeys(train_lang))
    unknown = sorted(set(hold_out) - set(tables.labels))
    if unknown:
        raise DataError(f"held-out label(s) {unknown} not in the label set {tables.labels}")
    labels = [label for label in tables.labels if label not in set(hold_out)]
    if len(labels) < 2:
        raise DataError(f"holding out {list(hold_out)} leaves fewer than two labels to train on")
    cache = Path(cache_dir) if cache_dir is not None else None
    test = _test_split(data_dir)
    # labelled: sources plus the shots; pool: other languages' remaining train text, no labels
    train = tables.train.filter(pl.col("category").is_in(labels))
    dev = tables.dev.filter(pl.col("category").is_in(labels))
    pool = tables.unlabelled
    _, y, langs = labelled(train, labels, f"{data_dir}/train ({', '.join(sources)})")
    train_v = TopicVectors(embed_split(encoder, train, cache, "train"), langs, y)
    dev_v = None
    if dev.height:
        _, dy, dl = labelled(dev, labels, f"{data_dir}/dev ({', '.join(sources)})", min_classes=1)
        dev_v = TopicVectors(embed_split(encoder, dev, cache, "dev"), dl, dy)
    unl_v = TopicVectors(embed_split(encoder, pool, cache, "train"),
                         pool["lang"].to_list()) if pool.height else None
    trained = time.perf_counter()
    classifier = fit_topic_classifier(labels, train_v, dev=dev_v, unlabelled=unl_v, method=method,
                                      encoder_fingerprint=encoder.fingerprint,
                                      encoder_name=encoder.name, self_training=self_training,
                                      seed=seed)
    fit_seconds = time.perf_counter() - trained
    result = evaluate_classifier(classifier, encoder, data_dir, sources, hold_out=hold_out, cache_dir=cache,
                                 bitext=bitext, test=test)
    result.update(method=method, shots=shots, seed=seed, unlabelled_per_lang=unlabelled_per_lang,
                  fit_seconds=round(fit_seconds, 2), total_seconds=round(time.perf_counter() - started, 1))
    return {key: result[key] for key in RESULT_KEYS if key in result}


def _test_split(data_dir: str | os.PathLike[str]) -> pl.DataFrame:
    test = load_split(data_dir, "test")
    if test.height == 0:
        raise DataError(f"{data_dir}: the test split has no rows")
    return test


def evaluate_classifier(classifier: TopicClassifier, encoder: Encoder, data_dir: str | os.PathLike[str],
                        train_lang: str | Sequence[str], *, hold_out: Sequence[str] | None = None,
                        cache_dir: str | os.PathLike[str] | None = None, bitext: dict | None = None,
                        test: pl.DataFrame | None = None) -> dict:
    """Accuracy and macro-F1 by language of a fitted ``classifier`` on the test split of
    ``data_dir`` (``test``: that split, when already loaded), and their summaries over the
    languages not in ``train_lang`` (see :func:`evaluate_topics`, whose result this is, less the
    training settings). Test texts of labels the classifier lacks (``hold_out``; default: every
    such label of the folder) measure ``topic_support`` as an out-of-distribution signal."""
    from xrec.catalogue.languages import filter_codes

    sources = filter_codes(train_lang, "train_lang")
    labels = list(classifier.labels)
    if hold_out is None:
        hold_out = [label for label in load_labels(data_dir) if label not in set(labels)]
    test = _test_split(data_dir) if test is None else test
    cache = Path(cache_dir) if cache_dir is not None else None
    codes = np.asarray(test["lang"].to_list(), dtype=object)
    vectors = embed_split(encoder, test, cache, "test", kind=classifier.text_kind)
    # languages without train text get the mean of the known means, never their test text's mean
    min_group = classifier.centering.min_group
    classifier.centering.min_group = np.iinfo(np.int64).max
    try:
        found = classifier.predict(vectors, codes.tolist())
    finally:
        classifier.centering.min_group = min_group
    known = test["category"].is_in(labels).to_numpy()
    index = {label: i for i, label in enumerate(labels)}
    y_test = np.asarray([index.get(c, -1) for c in test["category"].to_list()])
    pred = found.proba.argmax(axis=1)
    languages = {}
    for lang in sorted(set(codes.tolist())):
        rows = (codes == lang) & known
        languages[lang] = {"accuracy": float(np.mean(pred[rows] == y_test[rows])),
                           "macro_f1": macro_f1(y_test[rows], pred[rows], len(labels)),
                           "n": int(rows.sum())}
    others = sorted(lang for lang in languages if lang not in sources)
    accs = [languages[lang]["accuracy"] for lang in others]
    result = {
        "train_lang": ",".join(sources), "train_langs": sources, "method": classifier.method,
        "hold_out": list(hold_out), "languages": languages,
        "mean_accuracy": float(np.mean(accs)) if accs else float("nan"),
        "train_lang_accuracy": float(np.mean([languages[s]["accuracy"] for s in sources if s in languages]))
        if any(s in languages for s in sources) else float("nan"),
        "weakest_quarter_accuracy": _quarter(accs),
        "languages_under_70": int(sum(a < UNDER for a in accs)),
        "n_languages": len(languages), "encoder_fingerprint": encoder.fingerprint,
    }
    if hold_out:
        result["ood"] = _ood_report(found, known, codes, classifier.support_threshold)
    if bitext is not None:
        result["bitext"] = bitext_by_language(bitext, languages)
    return result


def bitext_by_language(bitext: dict, languages: Mapping[str, object]) -> dict[str, float]:
    """``xx2en`` bitext accuracy by language, for the ``languages`` a bitext result names (by its
    ``flores_code``, else its own code; both compared normalised, so results of older runs coded
    ``deu_Latn`` or ``deu`` still match ``de``)."""
    from xrec.catalogue.languages import item_codes

    if "languages" not in bitext:
        raise DataError("the bitext result has no 'languages' (not a result of xrec evaluate bitext?)")
    out = {}
    for code, row in bitext["languages"].items():
        flores = item_codes([row.get("flores_code") or code], "bitext languages")[0]
        if flores in languages and "xx2en" in row:
            out[flores] = float(row["xx2en"])
    return dict(sorted(out.items()))


def plot_accuracy_vs_bitext(result: dict, path: str | os.PathLike[str]) -> Path:
    """Scatter of topic accuracy against the encoder's bitext accuracy (``result['bitext']``), one
    labelled dot per language, as PNG: languages low on both are the ones to label first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(lang, acc, result["languages"][lang]["accuracy"])
             for lang, acc in result.get("bitext", {}).items() if lang in result["languages"]]
    if not pairs:
        raise DataError("no language has both a bitext and a topic accuracy")
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for lang, x, y in pairs:
        source = lang in result.get("train_langs", [result["train_lang"]])
        ax.scatter(x, y, s=14, color="tab:orange" if source else "tab:blue")
        ax.annotate(lang.split("_")[0], (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.axhline(UNDER, color="grey", linestyle=":", linewidth=1, label=f"topic accuracy {UNDER:.2f}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("bitext top-1 accuracy, xx->en (encoder)")
    ax.set_ylabel("topic accuracy")
    shots = f", {result.get('shots', 0)} shots per label" if result.get("shots") else ""
    ax.set_title(f"Topic vs bitext accuracy, {len(pairs)} languages "
                 f"(trained on {result['train_lang']}{shots})", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return _save_figure(fig, path)


def plot_accuracy(result: dict, path: str | os.PathLike[str]) -> Path:
    """Bar chart of test accuracy by language (sorted), the train language highlighted, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(result["languages"].items(), key=lambda kv: kv[1]["accuracy"])
    names = [k for k, _ in items]
    values = [v["accuracy"] for _, v in items]
    sources = result.get("train_langs", [result["train_lang"]])
    colours = ["tab:orange" if k in sources else "tab:blue" for k in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(names) + 2), 4))
    ax.bar(range(len(names)), values, color=colours)
    ax.axhline(result["mean_accuracy"], color="k", linestyle="--", linewidth=1,
               label=f"mean (other languages) {result['mean_accuracy']:.3f}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6 if len(names) > 40 else 8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    shots = f", {result['shots']} shots per label" if result.get("shots") else ""
    ax.set_title(f"Topic accuracy by language: trained on {result['train_lang']}{shots} ({result['method']})",
                 pad=22)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)  # over no bar
    return _save_figure(fig, path)


def _save_figure(fig, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG to ``path`` (atomically, folders made) and close it."""
    import matplotlib.pyplot as plt

    from xrec.artifacts import atomic_file

    fig.tight_layout()
    out = Path(path)
    with atomic_file(out) as tmp:  # makes the folders
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return out
