"""New items without retraining: :meth:`HybridRanker.add_items` against a refit, on real data.

Protocol (:func:`add_items_protocol`): a seeded random ``fraction`` of the items that have
interactions is the *new batch*; every interaction with them is held out as the test set (the
items are cold: no one has used them yet). Two rankers are compared on the cold-item AUC of those
test interactions (per user: each held-out item against every cold item of the catalogue,
averaged over users, as in :mod:`xrec.evaluation.metrics`):

* **refit**: fitted on the whole catalogue (the batch present, without its interactions), what a
  team would do by retraining once the items exist;
* **add_items**: fitted on the catalogue without the batch, then given it with
  :meth:`~xrec.ranking.hybrid.HybridRanker.add_items` (vectors, texts, languages, metadata).

Both fit the same training interactions with the same config; times are wall-clock seconds of
the refit and of ``add_items``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from xrec.evaluation.metrics import _auc


def cold_item_auc(ranker, test: pl.DataFrame) -> tuple[float, int]:
    """Mean over users of the AUC of their ``test`` items among the ranker's cold items, and the
    number of users it averages."""
    cold = np.flatnonzero(ranker.cold)
    rows = ranker.users.index(test["user_id"])
    cols = ranker.items.index(test["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    rows, cols = rows[keep], cols[keep]
    aucs = []
    users = np.unique(rows)
    for start in range(0, len(users), 256):
        batch = users[start:start + 256]
        scores = ranker.score_items(batch, np.broadcast_to(cold, (len(batch), len(cold))).copy())
        for j, row in enumerate(batch):
            auc = _auc(np.asarray(scores[j], dtype=np.float64), np.isin(cold, cols[rows == row]))
            if auc is not None:
                aucs.append(auc)
    return (float(np.mean(aucs)) if aucs else float("nan")), len(aucs)


def add_items_protocol(items: pl.DataFrame, ratings: pl.DataFrame, vectors: np.ndarray, *, fraction: float = 0.1,
                       seed: int = 0, metadata: Mapping[str, Sequence[str | None]] | None = None, config=None,
                       cf_fit=None) -> dict:
    """The module's protocol on a catalogue ``items`` (``item_id, text[, lang]``), its ``ratings``
    (``user_id, item_id[, weight][, timestamp]``), item ``vectors`` and ``metadata`` fields
    (catalogue order, as in :meth:`~xrec.ranking.hybrid.HybridRanker.fit`)."""
    from xrec.catalogue.interactions import Interactions
    from xrec.ranking.hybrid import HybridRanker

    rng = np.random.default_rng(seed)
    read = ratings["item_id"].unique().sort()
    batch = read.gather(np.sort(rng.choice(len(read), max(1, int(round(fraction * len(read)))), replace=False)))
    new = items["item_id"].is_in(batch.implode()).to_numpy()
    train = ratings.filter(~pl.col("item_id").is_in(batch.implode()))
    test = ratings.filter(pl.col("item_id").is_in(batch.implode()))
    langs = items["lang"].to_list() if "lang" in items.columns else None
    texts = items["text"].to_list()
    meta = {f: list(v) for f, v in (metadata or {}).items()}

    def fit(mask: np.ndarray):
        pick = lambda values: None if values is None else [v for v, m in zip(values, mask) if m]  # noqa: E731
        inter = Interactions.build(train, items["item_id"].filter(pl.Series(mask)))
        return HybridRanker.fit(inter, vectors[mask], texts=pick(texts), languages=pick(langs),
                                metadata={f: [x for x, m in zip(v, mask) if m] for f, v in meta.items()},
                                config=config, cf_fit=cf_fit)

    t0 = time.perf_counter()
    refit = fit(np.ones(len(new), dtype=bool))
    t_refit = time.perf_counter() - t0
    t0 = time.perf_counter()
    grown = fit(~new)
    t_before = time.perf_counter() - t0
    pick_new = lambda values: None if values is None else [v for v, m in zip(values, new) if m]  # noqa: E731
    t0 = time.perf_counter()
    grown = grown.add_items(items["item_id"].filter(pl.Series(new)), vectors[new], texts=pick_new(texts),
                    languages=pick_new(langs), metadata={f: [x for x, m in zip(v, new) if m] for f, v in meta.items()})
    t_add = time.perf_counter() - t0
    auc_refit, users = cold_item_auc(refit, test)
    auc_add, _ = cold_item_auc(grown, test)
    return {"items": len(new), "items_added": int(new.sum()), "test_interactions": test.height,
            "users": users, "cold_items": int(refit.cold.sum()),
            "cold_auc_refit": auc_refit, "cold_auc_add_items": auc_add,
            "seconds_refit": t_refit, "seconds_fit_without_batch": t_before, "seconds_add_items": t_add,
            "protocol": (__doc__ or "").split("\n\n")[1].replace("\n", " ")}
