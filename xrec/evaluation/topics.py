"""Zero-shot cross-lingual topic evaluation on a SIB-200 folder.

Trains on the train split of one language (its dev split for model selection and calibration),
may read the unlabelled ``text`` of the other languages' train splits (never their labels, never
test text), and reports test accuracy and macro-F1 for every language in the folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from xrec.datasets.sib200 import load_labels, load_split
from xrec.encoders.base import Encoder
from xrec.errors import DataError
from xrec.store import embed_items
from xrec.topics.data import check_texts_column, labelled, sample_per_language, select_languages
from xrec.topics.tagging import TEXT_KIND
from xrec.topics.transfer import DEFAULT_METHOD, SelfTraining, TopicVectors, fit_topic_classifier


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


def _embed(encoder: Encoder, frame: pl.DataFrame, cache: Path | None, name: str) -> np.ndarray:
    """Vectors of ``frame['text']``, reusing a per-(split, language) store file under ``cache``."""
    texts = check_texts_column(frame, name)
    if cache is None:
        return encoder.encode(texts, kind=TEXT_KIND)
    out = np.empty((frame.height, encoder.dim), dtype=np.float32)
    langs = frame["lang"].to_numpy()
    for lang in dict.fromkeys(langs):
        rows = np.flatnonzero(langs == lang)
        ids = frame["index_id"].to_numpy()[rows].tolist()
        out[rows] = embed_items(encoder, ids, [texts[r] for r in rows], kind=TEXT_KIND,
                                store=cache / f"{name}_{lang}.parquet")
    return out


def evaluate_topics(data_dir: str | os.PathLike[str], train_lang: str, encoder: Encoder, *,
                    method: str = DEFAULT_METHOD, unlabelled_per_lang: int = 100,
                    self_training: SelfTraining = SelfTraining(), seed: int = 0,
                    cache_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train on ``train_lang`` and test on every language of ``data_dir``; returns the JSON dict."""
    started = time.perf_counter()
    labels = load_labels(data_dir)
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    train_all = load_split(data_dir, "train")
    source = select_languages(train_all, [train_lang], f"{data_dir}/train")
    dev = load_split(data_dir, "dev", [train_lang])
    test = load_split(data_dir, "test")
    if test.height == 0:
        raise DataError(f"{data_dir}: the test split has no rows")
    # unlabelled pool: other languages' train text only; the label column is dropped here
    pool = sample_per_language(train_all.filter(pl.col("lang") != train_lang), unlabelled_per_lang,
                               seed).select("lang", "index_id", "text")
    texts, y, langs = labelled(source, labels, f"{data_dir}/train ({train_lang})")
    train_v = TopicVectors(_embed(encoder, source, cache, "train"), langs, y)
    dev_v = None
    if dev.height:
        _, dy, dl = labelled(dev, labels, f"{data_dir}/dev ({train_lang})", min_classes=1)
        dev_v = TopicVectors(_embed(encoder, dev, cache, "dev"), dl, dy)
    unl_v = TopicVectors(_embed(encoder, pool, cache, f"unlabelled{unlabelled_per_lang}"),
                         pool["lang"].to_list()) if pool.height else None
    trained = time.perf_counter()
    classifier = fit_topic_classifier(labels, train_v, dev=dev_v, unlabelled=unl_v, method=method,
                                      encoder_fingerprint=encoder.fingerprint,
                                      encoder_name=encoder.name, self_training=self_training,
                                      seed=seed)
    fit_seconds = time.perf_counter() - trained
    # languages without train text get the mean of the known means, never their test text's mean
    classifier.centering.min_group = np.iinfo(np.int64).max
    _, y_test, test_langs = labelled(test, labels, f"{data_dir}/test", min_classes=1)
    pred = classifier.logits(_embed(encoder, test, cache, "test"), test_langs).argmax(axis=1)
    codes = np.asarray(test_langs, dtype=object)
    languages = {}
    for lang in sorted(set(test_langs)):
        rows = codes == lang
        languages[lang] = {"accuracy": float(np.mean(pred[rows] == y_test[rows])),
                           "macro_f1": macro_f1(y_test[rows], pred[rows], len(labels)),
                           "n": int(rows.sum())}
    others = sorted(lang for lang in languages if lang != train_lang)
    accs = np.sort([languages[lang]["accuracy"] for lang in others])
    quarter = accs[: max(1, len(accs) // 4)] if len(accs) else accs
    return {
        "train_lang": train_lang, "method": method, "languages": languages,
        "mean_accuracy": float(accs.mean()) if len(accs) else float("nan"),
        "train_lang_accuracy": languages.get(train_lang, {}).get("accuracy", float("nan")),
        "weakest_quarter_accuracy": float(quarter.mean()) if len(accs) else float("nan"),
        "n_languages": len(languages), "unlabelled_per_lang": unlabelled_per_lang,
        "encoder_fingerprint": encoder.fingerprint, "fit_seconds": round(fit_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def plot_accuracy(result: dict, path: str | os.PathLike[str]) -> Path:
    """Bar chart of test accuracy by language (sorted), the train language highlighted, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(result["languages"].items(), key=lambda kv: kv[1]["accuracy"])
    names = [k for k, _ in items]
    values = [v["accuracy"] for _, v in items]
    colours = ["tab:orange" if k == result["train_lang"] else "tab:blue" for k in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(names) + 2), 4))
    ax.bar(range(len(names)), values, color=colours)
    ax.axhline(result["mean_accuracy"], color="k", linestyle="--", linewidth=1,
               label=f"mean (other languages) {result['mean_accuracy']:.3f}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6 if len(names) > 40 else 8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Topic accuracy by language: trained on {result['train_lang']} ({result['method']})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
