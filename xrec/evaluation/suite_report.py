"""The suite's table (markdown, for the terminal and the docs) and its plot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Model order in the table and the plot (others follow in the order first seen).
MODEL_ORDER = ("popularity", "random", "als", "bpr", "lightfm", "lightfm_content", "content", "tfidf",
               "rerank_als", "hybrid")


def model_names(result: dict) -> list[str]:
    """Every model of any member, in :data:`MODEL_ORDER`."""
    seen: list[str] = []
    for entry in result["members"].values():
        seen += [n for n in entry["models"] if n not in seen]
    return sorted(seen, key=lambda n: (MODEL_ORDER.index(n) if n in MODEL_ORDER else len(MODEL_ORDER), seen.index(n)))


def _ci(value: float | None, ci: list | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    text = f"{value:.{digits}f}"
    return f"{text} ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci else text


def _ratio(entry: dict | None) -> str:
    if not entry:
        return "-"
    ci = entry.get("ci95")
    return f"{entry['ratio']:.2f}x" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "") + f" {entry['best']}"


def format_table(result: dict) -> str:
    """Two markdown tables: NDCG@10 per model and member (95% bootstrap interval over users), and
    the hybrid against its parts and the other models, with the goals and the run time."""
    names = model_names(result)
    members = result["members"]
    lines = ["NDCG@10 (95% bootstrap interval over users)", "",
             "| member | users | ranked | " + " | ".join(names) + " |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in names) + " |"]
    for name, e in members.items():
        p = e["protocol"]
        ranked = p.get("candidates", p.get("items"))
        cells = [_ci(e["models"][n]["ndcg@10"], e["models"][n]["ci95"]) if n in e["models"] else "-" for n in names]
        lines.append(f"| {name} | {p.get('users_evaluated', '-')} | {ranked} | " + " | ".join(cells) + " |")
    lines += ["", "The hybrid against the best of its parts (content, tfidf, als, popularity: those run) and "
                  "the best other model: NDCG@10 ratio (95% paired-bootstrap interval) and which model; goal: "
                  ">= 1.0x, lower bound >= 0.95x, never the worst", "",
              "| member | hybrid / best part | hybrid / best other | hybrid rank | goal | AUC hybrid (best) | s |",
              "| --- | --- | --- | ---: | --- | --- | ---: |"]
    for name, e in members.items():
        goals = e.get("goals", {})
        met = "-" if not goals else ("met" if goals.get("parts") and goals.get("not_worst") else
                                     "no" + ("" if goals.get("not_worst") else ", worst"))
        rank = e.get("hybrid_rank")
        lines.append(f"| {name} | {_ratio(e.get('hybrid_vs_best_part'))} | {_ratio(e.get('hybrid_vs_best_other'))} | "
                     f"{'-' if not rank else f'{rank[0]} of {rank[1]}'} | {met} | {_auc(e)} | "
                     f"{e['seconds']['total']:.0f} |")
    return "\n".join(lines)


def _auc(entry: dict) -> str:
    """The hybrid's AUC over the candidates (new-catalogue members) or over the cold items, and the
    best model by it."""
    key = "auc" if any(m.get("auc") is not None for m in entry["models"].values()) else "cold_auc"
    values = {n: m.get(key) for n, m in entry["models"].items()}
    values = {n: v for n, v in values.items() if v is not None and np.isfinite(v)}
    if "hybrid" not in values:
        return "-"
    best = max(values, key=lambda n: values[n])
    label = "" if key == "auc" else "cold "
    return f"{label}{values['hybrid']:.2f} ({best} {values[best]:.2f})"


def colours(names: list[str]) -> dict[str, tuple]:
    """One distinct colour per model (tab10, then tab20), fixed by :data:`MODEL_ORDER`."""
    import matplotlib

    tab10, tab20 = matplotlib.colormaps["tab10"], matplotlib.colormaps["tab20"]  # ListedColormaps
    palette = list(tab10.colors) + list(tab20.colors[1::2])  # pyright: ignore[reportAttributeAccessIssue]
    known = {n: palette[i] for i, n in enumerate(MODEL_ORDER)}
    spare = iter(palette[len(MODEL_ORDER):])
    return {n: known[n] if n in known else next(spare) for n in names}


def plot_suite(result: dict, path: str | os.PathLike[str]) -> Path:
    """One panel per member (NDCG@10 per model, 95% intervals as error bars, own scale), one panel
    of the hybrid / best part ratio per member with the goals drawn; the legend below the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from xrec.artifacts import atomic_file

    members = result["members"]
    names = model_names(result)
    colour = colours(names)
    n = len(members) + 1
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows + 0.8), squeeze=False)
    flat = axes.ravel()
    for ax, (member, e) in zip(flat, members.items()):
        shown = [m for m in names if m in e["models"]]
        values = [e["models"][m]["ndcg@10"] for m in shown]
        low = [v - (e["models"][m]["ci95"] or [v, v])[0] for m, v in zip(shown, values)]
        high = [(e["models"][m]["ci95"] or [v, v])[1] - v for m, v in zip(shown, values)]
        ax.bar(range(len(shown)), values, color=[colour[m] for m in shown], yerr=[low, high], capsize=2,
               error_kw={"elinewidth": 0.8})
        ax.set_xticks([])
        ax.set_title(f"{member} ({e['protocol'].get('users_evaluated', '?')} users)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("NDCG@10", fontsize=7)
    ax = flat[len(members)]
    ratios = [(m, e["hybrid_vs_best_part"]) for m, e in members.items() if e.get("hybrid_vs_best_part")]
    if ratios:
        x = np.arange(len(ratios))
        values = [r["ratio"] for _, r in ratios]
        cis = [r.get("ci95") or [r["ratio"]] * 2 for _, r in ratios]
        ax.bar(x, values, color=colour.get("hybrid", "tab:red"),
               yerr=[[v - c[0] for v, c in zip(values, cis)], [c[1] - v for v, c in zip(values, cis)]], capsize=2)
        ax.axhline(RATIO_LINE, color="black", linewidth=0.8)
        ax.axhline(LOWER_LINE, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(x, [f"{m} {v:.2f}x" for (m, _), v in zip(ratios, values)], rotation=45, ha="right",
                      fontsize=7)
        ax.tick_params(labelsize=7)
    ax.set_title("hybrid / best of its parts (goal 1x, lower bound 0.95x)", fontsize=8)
    for extra in flat[len(members) + 1:]:
        extra.axis("off")
    handles = [matplotlib.patches.Patch(color=colour[m], label=m) for m in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    fig.suptitle("xrec evaluation suite: NDCG@10 per member (95% bootstrap intervals)", fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / (2.9 * rows + 0.8) + 0.04, 1, 0.97))
    out = Path(path)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


#: Lines of the ratio panel: the goal and its lower-bound goal.
RATIO_LINE, LOWER_LINE = 1.0, 0.95
