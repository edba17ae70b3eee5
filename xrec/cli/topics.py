"""``xrec topics train``, ``xrec tag`` and ``xrec evaluate topics``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl

from xrec.artifacts import atomic_file, check_writable, write_json
from xrec.cli import add_encoder_options
from xrec.errors import DataError


def register(commands: argparse._SubParsersAction, evaluate: argparse._SubParsersAction,
             bench: argparse._SubParsersAction) -> None:
    """Add ``topics train``, ``tag`` and ``evaluate topics``."""
    topics = commands.add_parser("topics", help="train topic classifiers").add_subparsers(
        dest="topics_command", metavar="WHAT", required=True)
    train = topics.add_parser(
        "train", help="train a cross-lingual topic classifier",
        description="Train on DATA: a table (text, category[, lang]) or a SIB-200-style folder "
                    "(train/dev/test.jsonl.gz + labels.txt). With a folder, --train-lang picks the "
                    "labelled languages; the other languages' train text is used unlabelled. A "
                    "table may mix languages: many labels in some, a handful in others (a language "
                    "with fewer than 100 labelled texts teaches its own texts only).")
    train.add_argument("--data", required=True, help="labelled table or SIB-200-style folder")
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--labels", help="label set file, one per line (default: labels.txt of a "
                                        "folder, else the categories found in DATA)")
    train.add_argument("--train-lang", nargs="+", type=_codes, action=_ExtendCodes,
                       help="languages whose labels are used, space- or comma-separated (folder or "
                            "table with a lang column; default: all)")
    train.add_argument("--dev", help="labelled dev table for model selection and calibration")
    train.add_argument("--unlabelled", help="table of unlabelled text[, lang] in target languages")
    train.add_argument("--unlabelled-per-lang", type=int, default=100,
                       help="unlabelled texts sampled per language")
    train.add_argument("--method", default=None, choices=_Methods(), metavar="METHOD",
                       help=METHOD_HELP)
    train.add_argument("--threshold", type=float, default=0.5,
                       help="topic_score below which `xrec tag --abstain` says unknown")
    train.add_argument("--support-threshold", type=float, default=None, help=SUPPORT_HELP)
    add_encoder_options(train, device=True, precision=True)
    train.set_defaults(func=run_train)

    tag = commands.add_parser("tag", help="add topic, topic_score and topic_support to each item",
                              description="Tag ITEMS (a table with text[, lang]) with a trained "
                                          "topic model; writes OUT (parquet, CSV or JSONL). "
                                          "topic_score: calibrated probability of topic among the "
                                          "model's labels; topic_support: share of held-out "
                                          "labelled texts less covered by the labels than the item.")
    tag.add_argument("--items", required=True, help="items table: parquet, CSV or JSONL")
    tag.add_argument("--topic-model", required=True, help="topic model directory (xrec topics train)")
    tag.add_argument("--out", required=True, help="output table (.parquet, .csv or .jsonl)")
    tag.add_argument("--abstain", action="store_true",
                     help="write 'unknown' where topic_score or topic_support is below the "
                          "model's thresholds")
    add_encoder_options(tag, device=True, precision=True, model_default=None,
                        model_help="encoder (default: the one the topic model was trained with)")
    tag.set_defaults(func=run_tag)

    ev = evaluate.add_parser(
        "topics", help="cross-lingual topic accuracy per language (SIB-200 layout)",
        description="Train on the labels of --train-lang (plus --shots labelled texts per label of "
                    "every other language) and report test accuracy and macro-F1 per language, and "
                    "the mean, the weakest quarter and the number of languages under 0.70 over the "
                    "other languages; JSON, a PNG of accuracy by language and, given --bitext, a PNG "
                    "of accuracy against bitext accuracy.")
    ev.add_argument("--data", required=True, help="SIB-200-style folder")
    ev.add_argument("--train-lang", required=True, type=_codes,
                    help="labelled language(s), comma-separated, e.g. eng_Latn or eng_Latn,fra_Latn")
    ev.add_argument("--json", required=True, help="where to write the result JSON")
    ev.add_argument("--plot", help="PNG of accuracy by language (default: beside --json)")
    ev.add_argument("--method", default=None, choices=_Methods(), metavar="METHOD",
                    help=METHOD_HELP)
    ev.add_argument("--shots", type=int, default=0,
                    help="labelled train texts per label given to every other language (default: 0, zero-shot)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the shots and samples (default: 0)")
    ev.add_argument("--unlabelled-per-lang", type=int, default=100,
                    help="unlabelled train texts sampled per other language")
    ev.add_argument("--hold-out", nargs="+", default=[], metavar="LABEL",
                    help="labels left out of training: their test texts measure topic_support as an "
                         "out-of-distribution signal (AUROC)")
    ev.add_argument("--bitext", help="result JSON of `xrec evaluate bitext` (with flores codes): "
                                     "plots topic accuracy against it (PNG beside --json)")
    ev.add_argument("--store", help="folder caching vectors per split and language")
    add_encoder_options(ev, device=True, precision=True)
    ev.set_defaults(func=run_evaluate)


#: Help of --method; names the library's default (a test keeps it in step with DEFAULT_METHOD).
METHOD_HELP = "cross-lingual transfer method: %(choices)s (default: kernel)"


class _Methods:
    """The transfer methods, imported only when argparse needs them: importing ``xrec.topics``
    loads torch, about a second that every other command would pay at start-up."""

    @staticmethod
    def _names() -> tuple[str, ...]:
        from xrec.topics.transfer import METHODS

        return METHODS

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


#: Help of --support-threshold; names the library's default (a test keeps it in step with
#: DEFAULT_SUPPORT_THRESHOLD, imported at run time like the methods).
SUPPORT_HELP = ("topic_support below which `xrec tag --abstain` says unknown; about that share of "
                "held-out labelled texts falls below it, more of other languages (default: 0.05)")


def _support_threshold(args: argparse.Namespace) -> float:
    from xrec.topics.support import DEFAULT_SUPPORT_THRESHOLD

    return DEFAULT_SUPPORT_THRESHOLD if args.support_threshold is None else args.support_threshold


def _method(args: argparse.Namespace) -> str:
    from xrec.topics.transfer import DEFAULT_METHOD

    return args.method or DEFAULT_METHOD


def _codes(value: str) -> list[str]:
    """A comma-separated list of language codes (empty items dropped)."""
    codes = [code.strip() for code in value.split(",") if code.strip()]
    if not codes:
        raise argparse.ArgumentTypeError(f"no language code in {value!r}")
    return codes


class _ExtendCodes(argparse.Action):
    """Collects the codes of every value (each a list from :func:`_codes`) into one flat list."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        codes = list(getattr(namespace, self.dest) or [])
        setattr(namespace, self.dest, codes + [code for value in values for code in value])


def _write_table(frame: pl.DataFrame, path: str) -> None:
    name = path.lower()
    with atomic_file(path) as tmp:
        if name.endswith(".parquet"):
            frame.write_parquet(tmp)
        elif name.endswith(".csv"):
            frame.write_csv(tmp)
        elif name.endswith((".jsonl", ".ndjson")):
            frame.write_ndjson(tmp)
        else:
            raise DataError(f"{path}: unknown output format; use .parquet, .csv or .jsonl")


def _training_tables(args: argparse.Namespace) -> tuple[pl.DataFrame, pl.DataFrame | None,
                                                        pl.DataFrame | None, list[str]]:
    from xrec.catalogue.tables import read_table
    from xrec.topics.data import sample_per_language, select_languages, topic_tables

    data = Path(args.data)
    if data.is_dir():
        tables = topic_tables(data, args.train_lang, unlabelled_per_lang=args.unlabelled_per_lang)
        labels = tables.labels if not args.labels else _read_labels(args.labels)
        train = tables.train
        dev = tables.dev if args.dev is None else read_table(args.dev)
        unlabelled = tables.unlabelled.select("lang", "text")
    else:
        train = select_languages(read_table(data, required=["text", "category"]), args.train_lang,
                                 str(data))
        labels = (_read_labels(args.labels) if args.labels
                  else sorted(train["category"].drop_nulls().cast(pl.String).unique().to_list()))
        dev = read_table(args.dev, required=["text", "category"]) if args.dev else None
        unlabelled = None
    if args.unlabelled:
        table = read_table(args.unlabelled, required=["text"])
        if "lang" in table.columns:
            table = sample_per_language(table, args.unlabelled_per_lang)
        unlabelled = table
    return train, dev, unlabelled, labels


def _read_labels(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such label file")
    labels = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise DataError(f"{file}: needs at least two distinct labels, found {labels}")
    return labels


def run_train(args: argparse.Namespace) -> int:
    """Train and save a topic model."""
    from xrec.encoders import load_encoder
    from xrec.topics.tagging import train_topics

    check_writable(args.out)
    train, dev, unlabelled, labels = _training_tables(args)
    encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    from xrec.progress import phase

    with phase(f"training the topic classifier on {train.height} labelled texts"):
        classifier = train_topics(encoder, train, labels, dev=dev, unlabelled=unlabelled,
                                  method=_method(args), threshold=args.threshold,
                                  support_threshold=_support_threshold(args), source=args.data)
    classifier.save(args.out)
    print(f"wrote topic model ({classifier.method}, {len(labels)} labels, "
          f"{len(classifier.centering.means)} language means) to {args.out}", file=sys.stderr)
    return 0


def run_tag(args: argparse.Namespace) -> int:
    """Tag an items table with a saved topic model."""
    from xrec.catalogue.tables import read_table
    from xrec.encoders import load_encoder
    from xrec.topics.classifier import TopicClassifier
    from xrec.topics.tagging import tag_items

    check_writable(args.out)
    items = read_table(args.items, required=["text"])
    classifier = TopicClassifier.load(args.topic_model)
    encoder = load_encoder(args.model or classifier.encoder_name or "bundled", device=args.device,
                           precision=args.precision)
    tagged = tag_items(classifier, encoder, items, abstain=args.abstain, source=args.items)
    _write_table(tagged, args.out)
    print(f"tagged {tagged.height} items -> {args.out}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the per-language evaluation, write JSON and the plots, print a summary."""
    from xrec.encoders import load_encoder
    from xrec.evaluation.topics import evaluate_topics, plot_accuracy, plot_accuracy_vs_bitext

    bitext = None
    if args.bitext:
        try:
            bitext = json.loads(Path(args.bitext).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{args.bitext}: not a readable bitext result JSON ({exc})") from exc
    encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    from xrec.progress import phase

    with phase("topic accuracy by language"):
        result = evaluate_topics(encoder, args.data, args.train_lang, method=_method(args),
                                 shots=args.shots, seed=args.seed, hold_out=args.hold_out,
                                 unlabelled_per_lang=args.unlabelled_per_lang, cache_dir=args.store,
                                 bitext=bitext)
    plot = args.plot or str(Path(args.json).with_suffix(".png"))
    result["plot"] = str(plot_accuracy(result, plot))
    if result.get("bitext"):
        result["bitext_plot"] = str(plot_accuracy_vs_bitext(
            result, Path(args.json).with_name(Path(args.json).stem + "_vs_bitext.png")))
    write_json(args.json, result)
    n_other = len(result["languages"]) - sum(s in result["languages"] for s in result["train_langs"])
    print(f"{result['train_lang']} ({result['method']}, {result['shots']} shots): "
          f"{result['train_lang_accuracy']:.3f}; mean over {n_other} other languages "
          f"{result['mean_accuracy']:.3f}; weakest quarter {result['weakest_quarter_accuracy']:.3f}; "
          f"{result['languages_under_70']} under 0.70 -> {args.json}, {plot}")
    if "ood" in result:
        ood = result["ood"]
        print(f"held out {', '.join(result['hold_out'])}: topic_support AUROC {ood['auroc_support']:.3f} "
              f"(topic_score {ood['auroc_score']:.3f}); abstained {ood['abstained_held_out']:.2f} of "
              f"held-out texts, {ood['abstained_known']:.2f} of the others")
    return 0
