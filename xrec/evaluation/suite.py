"""The evaluation suite: one protocol (:mod:`xrec.evaluation.recs`) over catalogues and sizes.

Members (:func:`default_members`), each run on its own and cached so that a rerun of one is cheap:

* the small catalogues of ``data/catalogues/<name>/`` (generic layout, one member each);
* ``ml-es``: the cross-language cold start on MovieLens with real Spanish titles
  (:mod:`xrec.datasets.movielens_es`, new-language protocol for ``es``), and ``ml-es-en``, its
  monolingual reference (the same new movies shown in English);
* ``ml``: MovieLens (last 20% of each user's ratings by time held out);
* ``bx-2``, ``bx-10``, ``bx-30``: Book-Crossing with a seeded random 2%, 10% and 30% of the users
  (all their interactions; the catalogue stays whole), and ``bx``: Book-Crossing whole.

Every member reports each model's NDCG@10 with a 95% bootstrap interval over users, and the
hybrid against the best of its own parts (:data:`PARTS` that were run) as a ratio with a 95%
paired-bootstrap interval (:func:`~xrec.evaluation.metrics.ratio_interval`), against the best other
model, and its rank. The goal of issue 25: ratio >= 1.0, lower bound >= 0.95, never the worst.

Item vectors go through an embedding store per catalogue under ``work/stores`` (the Book-Crossing
members share one), so a rerun embeds nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from xrec.errors import DataError
from xrec.evaluation.metrics import mean_interval, ratio_interval

log = logging.getLogger(__name__)

#: Models of a member with interactions on its candidates.
DEFAULT_MODELS = ("popularity", "als", "bpr", "content", "tfidf", "hybrid")
#: The hybrid's own simple parts, compared with it (those a member ran).
PARTS = ("content", "tfidf", "als", "popularity")
#: Goals of issue 25: hybrid / best part >= RATIO_GOAL with its lower bound >= LOWER_GOAL.
RATIO_GOAL, LOWER_GOAL = 1.0, 0.95
#: Random splits per small catalogue (:attr:`Member.splits`).
SMALL_SPLITS = 5
#: Book-Crossing user subsamples (member name suffix -> fraction of users).
BX_SUBSAMPLES = {"2": 0.02, "10": 0.10, "30": 0.30}


@dataclass(frozen=True)
class Member:
    """One catalogue (and size) of the suite."""

    name: str
    data: Path  #: folder in any layout of :func:`xrec.evaluation.splits.load_split`
    about: str
    store: str  #: embedding store name (members with the same catalogue share it)
    new_language: str | None = None
    new_items: Path | None = None
    users: float | None = None  #: fraction of the users kept (seeded)
    reuse: tuple[str, ...] = ()  #: other members' stores whose vectors this one may reuse (same texts)
    template: str | None = None  #: item text from the items' fields (generic layout)
    metadata: tuple[str, ...] | None = None  #: item fields linking items for the hybrid
    prepare: Callable[[], object] | None = field(default=None, compare=False)  #: writes ``data`` first
    #: random splits evaluated (seed, seed+1, ...): each user's NDCG is averaged over them, so that a
    #: small catalogue's figure is not one split's luck (its intervals still resample users)
    splits: int = 1


def default_members(shared: str | os.PathLike[str], catalogues: str | os.PathLike[str],
                    work: str | os.PathLike[str], *, seed: int = 0) -> list[Member]:
    """The suite's members in run order (small first): the catalogues found under ``catalogues``,
    then the MovieLens and Book-Crossing members from the ``shared`` data folder."""
    from xrec.datasets.movielens_es import write_new_language_catalogue
    from xrec.evaluation.splits import detect_layout

    shared, catalogues, work = Path(shared), Path(catalogues), Path(work)
    members = []
    if catalogues.is_dir():
        for folder in sorted(p for p in catalogues.iterdir() if p.is_dir()):
            try:
                detect_layout(folder)
            except DataError:
                continue
            settings = _settings(folder)
            members.append(Member(folder.name, folder, f"small catalogue {folder.name}", f"catalogue-{folder.name}",
                                  template=settings.get("template"), metadata=settings.get("metadata"),
                                  splits=SMALL_SPLITS))
    ml = shared / "movielens_latest_small"
    for name, english in (("ml-es", False), ("ml-es-en", True)):
        folder = work / f"{name}-seed{seed}"
        prepare = _Prepare(write_new_language_catalogue, ml, shared / "movielens_es", folder, seed, english)
        members.append(Member(
            name, folder, "MovieLens, new catalogue of 30% of the movies with Spanish titles, shown in "
            + ("English (monolingual reference)" if english else "Spanish"), f"{name}-seed{seed}",
            new_language=None if english else "es", new_items=folder / "new_items.csv" if english else None,
            prepare=prepare, reuse=(f"ml-es{'' if english else '-en'}-seed{seed}",)))
    members.append(Member("ml", ml, "MovieLens ml-latest-small", "movielens", reuse=(f"ml-es-en-seed{seed}",)))
    bx = shared / "bookcrossing"
    for suffix, fraction in BX_SUBSAMPLES.items():
        members.append(Member(f"bx-{suffix}", bx, f"Book-Crossing, {fraction:.0%} of the users", "bookcrossing",
                              users=fraction))
    members.append(Member("bx", bx, "Book-Crossing whole", "bookcrossing"))
    return members


#: Optional file in a catalogue folder: ``{"template": "{title}. {lead}", "metadata": ["source"]}``.
SETTINGS_FILE = "evaluate.json"


def _settings(folder: Path) -> dict:
    """The catalogue's :data:`SETTINGS_FILE` (template, metadata), checked; {} when absent."""
    import json

    path = folder / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(settings, dict) or set(settings) - {"template", "metadata"}:
        raise DataError(f"{path}: expected an object with 'template' and/or 'metadata', got {settings!r}")
    if not isinstance(settings.get("template", ""), str):
        raise DataError(f"{path}: 'template' must be a string")
    metadata = settings.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, list) or not all(isinstance(f, str) for f in metadata):
            raise DataError(f"{path}: 'metadata' must be a list of field names")
        settings["metadata"] = tuple(metadata)
    return settings


@dataclass(frozen=True)
class _Prepare:
    """Writes a MovieLens new-language catalogue unless one with the same settings is there."""

    write: Callable
    movielens: Path
    spanish: Path
    out: Path
    seed: int
    english: bool

    def __call__(self) -> Path:
        import json

        manifest = self.out / "manifest.json"
        if manifest.is_file():
            old = json.loads(manifest.read_text(encoding="utf-8"))
            if old.get("seed") == self.seed and old.get("shown_in") == ("en" if self.english else "es"):
                return self.out
        return self.write(self.movielens, self.spanish, self.out, seed=self.seed, english=self.english)


def select(members: Sequence[Member], only: Sequence[str] | None = None,
           skip: Sequence[str] = ()) -> list[Member]:
    """Members named in ``only`` (all when None), less those in ``skip``; unknown names are an error."""
    names = [m.name for m in members]
    unknown = [n for n in list(only or []) + list(skip) if n not in names]
    if unknown:
        raise DataError(f"unknown suite member(s) {unknown}; the members: {names}")
    return [m for m in members if (only is None or m.name in only) and m.name not in skip]


def run_member(member: Member, encoder, *, work: str | os.PathLike[str], models: Sequence[str] | None = None,
               seed: int = 0, threads: int = 2) -> dict:
    """Evaluate one member; returns its summary (:func:`summarise`) with timings in seconds.

    A member of several :attr:`~Member.splits` is evaluated on each (seeds ``seed``, ``seed + 1``...);
    its figures are means over the splits and its per-user NDCG the mean of each user's splits."""
    from xrec.evaluation.metrics import positives
    from xrec.evaluation.recs import NEW_LANGUAGE_MODELS, evaluate_recs
    from xrec.evaluation.splits import load_split
    from xrec.ranking.content import item_vectors

    t0 = time.perf_counter()
    if member.prepare is not None:
        member.prepare()
    store = Path(work) / "stores" / f"{member.store}.parquet"
    reports, users, t_load, t_embed = [], [], 0.0, 0.0
    per_user: dict[str, list[np.ndarray]] = {}
    for split_seed in range(seed, seed + member.splits):
        t1 = time.perf_counter()
        split = load_split(member.data, seed=split_seed, new_language=member.new_language,
                           new_items=member.new_items, users=member.users, template=member.template,
                           metadata=member.metadata)
        t2 = time.perf_counter()
        vectors = item_vectors(encoder, split.items, store=store, progress=True,
                               reuse=[store.with_name(f"{name}.parquet") for name in member.reuse])
        t_load, t_embed = t_load + t2 - t1, t_embed + time.perf_counter() - t2
        names = list(models) if models else list(NEW_LANGUAGE_MODELS if split.candidates is not None
                                                 else DEFAULT_MODELS)
        ndcgs: dict[str, dict[str, np.ndarray]] = {}
        reports.append(evaluate_recs(split, vectors, names, threads=threads, seed=split_seed, progress=True,
                                     liked=False, per_user=ndcgs))
        users.append(split.train.users.to_ids(positives(split).users))
        for name, values in ndcgs.items():
            per_user.setdefault(name, []).append(values["all"])
    total = time.perf_counter() - t0
    report, pooled = reports[0], {n: v[0] for n, v in per_user.items()}
    if member.splits > 1:
        report, pooled = mean_over_splits(reports, users, per_user)
    out = summarise(report, pooled)
    out.update(name=member.name, about=member.about, data=str(member.data),
               measured_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
               encoder={"name": encoder.name, "fingerprint": encoder.fingerprint}, store=str(store),
               seconds={"load": round(t_load, 1), "embed": round(t_embed, 1),
                        "fit_and_evaluate": round(total - t_load - t_embed, 1), "total": round(total, 1)})
    if member.splits > 1:
        out["splits"] = {"seeds": list(range(seed, seed + member.splits)),
                         "hybrid_ndcg@10": [r["models"]["hybrid"]["ndcg@10"] for r in reports
                                            if "hybrid" in r["models"]],
                         "fusion": [r["models"]["hybrid"].get("fusion", {}).get("decision", {}).get("chosen")
                                    for r in reports if "hybrid" in r["models"]]}
    return out


def mean_over_splits(reports: Sequence[dict], users: Sequence[np.ndarray],
                     per_user: dict[str, list[np.ndarray]]) -> tuple[dict, dict[str, np.ndarray]]:
    """One report of several splits' (``reports``, each evaluating ``users[i]``): each model's
    figures averaged over the splits, and its per-user NDCG@10 averaged over the splits that
    evaluated the user (users in the order of first appearance; every model the same users)."""
    import copy

    order = list(dict.fromkeys(u for split_users in users for u in split_users.tolist()))
    where = {u: i for i, u in enumerate(order)}
    counts = np.zeros(len(order))
    for split_users in users:
        counts[[where[u] for u in split_users.tolist()]] += 1
    pooled = {}
    for name, arrays in per_user.items():
        total = np.zeros(len(order))
        for split_users, values in zip(users, arrays):
            total[[where[u] for u in split_users.tolist()]] += values
        pooled[name] = total / np.maximum(counts, 1)
    report = copy.deepcopy(reports[0])
    for name, model in report["models"].items():
        for key in ("ndcg@10", "recall@20", "auc", "fit_seconds"):
            values = [r["models"][name].get(key) for r in reports]
            if all(isinstance(v, (int, float)) for v in values):
                model[key] = float(np.mean(values))
        colds = [r["models"][name]["cold_items"].get("auc") for r in reports]
        if all(isinstance(v, (int, float)) for v in colds):
            model["cold_items"]["auc"] = float(np.mean(colds))
    report["protocol"]["splits"] = len(reports)
    return report, pooled


def summarise(report: dict, per_user: dict[str, np.ndarray], *, resamples: int = 1000, seed: int = 0) -> dict:
    """The suite's view of an :func:`~xrec.evaluation.recs.evaluate_recs` report: per model NDCG@10
    with its bootstrap interval, Recall@20, AUC (candidates) or cold-item AUC, fit seconds; the
    hybrid against the best of its parts and the best other model (paired bootstrap), its rank."""
    protocol = report["protocol"]
    models = {}
    for name, m in report["models"].items():
        ci = mean_interval(per_user[name], resamples=resamples, seed=seed) if name in per_user else None
        models[name] = {"ndcg@10": m["ndcg@10"], "ci95": list(ci) if ci else None, "recall@20": m["recall@20"],
                        "auc": m.get("auc"), "cold_auc": m["cold_items"]["auc"], "fit_seconds": m.get("fit_seconds")}
    out = {"protocol": {k: protocol[k] for k in ("split", "users", "items", "train_ratings", "test_ratings",
                                                 "users_evaluated", "positives", "candidates", "new_language",
                                                 "user_fraction", "splits") if k in protocol},
           "models": models}
    if "hybrid" in models:
        parts = [p for p in PARTS if p in models]
        out["hybrid_vs_best_part"] = _versus(models, per_user, parts, resamples, seed)
        others = [n for n in models if n not in ("hybrid", "rerank_als")]
        out["hybrid_vs_best_other"] = _versus(models, per_user, others, resamples, seed)
        ranked = sorted(models, key=lambda n: -models[n]["ndcg@10"])
        out["hybrid_rank"] = [ranked.index("hybrid") + 1, len(ranked)]
        best = out["hybrid_vs_best_part"]
        out["goals"] = {"parts": None if best is None else bool(
            best["ratio"] >= RATIO_GOAL and best.get("ci95") is not None and best["ci95"][0] >= LOWER_GOAL),
            "not_worst": out["hybrid_rank"][0] < len(ranked)}
    return out


def _versus(models: dict, per_user: dict[str, np.ndarray], names: Sequence[str], resamples: int,
            seed: int) -> dict | None:
    """The hybrid's NDCG@10 over the best of ``names``, with the paired-bootstrap interval."""
    names = [n for n in names if np.isfinite(models[n]["ndcg@10"])]
    if not names:
        return None
    best = max(names, key=lambda n: models[n]["ndcg@10"])
    if models[best]["ndcg@10"] <= 0:
        return None
    entry = {"best": best, "ratio": models["hybrid"]["ndcg@10"] / models[best]["ndcg@10"]}
    if "hybrid" in per_user and best in per_user:
        ci = ratio_interval(per_user["hybrid"], per_user[best], resamples=resamples, seed=seed)
        entry["ci95"] = list(ci) if ci else None
    return entry


def run_suite(members: Sequence[Member], encoder, path: str | os.PathLike[str], *,
              work: str | os.PathLike[str], models: Sequence[str] | None = None, seed: int = 0, threads: int = 2,
              fresh: bool = False, on_member: Callable[[dict], None] | None = None,
              order: Sequence[str] | None = None) -> dict:
    """Run ``members`` one after the other, writing the JSON result ``path`` after each; results
    of members not run now are kept from the file (``fresh``: start from nothing). Members are
    listed in ``order`` (default: that of ``members``), others after them."""
    import json

    from xrec.artifacts import write_json

    target = Path(path)
    result = {"kind": "xrec.evaluation.suite", "format_version": 1, "members": {}}
    if target.is_file() and not fresh:
        try:
            old = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{target}: not a suite result ({exc}); give --fresh to start anew") from exc
        if old.get("kind") != result["kind"]:
            raise DataError(f"{target}: not a suite result (kind {old.get('kind')!r}); give --fresh to start anew")
        result["members"] = old.get("members", {})
    order = list(order or [m.name for m in members])
    rank = lambda name: order.index(name) if name in order else len(order)  # noqa: E731
    for i, member in enumerate(members):
        log.info("suite member %s (%d of %d): %s", member.name, i + 1, len(members), member.about)
        entry = run_member(member, encoder, work=work, models=models, seed=seed, threads=threads)
        result["members"][member.name] = entry
        result["members"] = dict(sorted(result["members"].items(), key=lambda kv: rank(kv[0])))
        write_json(target, result)
        if on_member is not None:
            on_member(entry)
    return result
