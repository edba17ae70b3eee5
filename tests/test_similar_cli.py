"""``xrec similar`` and ``xrec bench retrieval`` end to end, on real SIB-200 sentences."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from xrec.cli.main import main
from xrec.datasets.sib200 import load_split
from xrec.errors import DataError
from xrec.index import VectorIndex
from xrec.index.similar import ItemSpace, similar_items, similar_texts


@pytest.fixture(scope="module")
def items(data_dir, tmp_path_factory):
    """15 sentences in each of 3 languages (translations of one another) as an items table."""
    frame = load_split(data_dir / "sib200", "test")
    langs = sorted(frame["lang"].unique().to_list())[:3]
    frame = frame.filter(pl.col("lang").is_in(langs)).group_by("lang", maintain_order=True).head(15)
    frame = frame.with_row_index("item_id").with_columns(pl.col("item_id").cast(pl.Int64))
    path = tmp_path_factory.mktemp("items") / "items.parquet"
    frame.select("item_id", "text", "lang", "index_id").write_parquet(path)
    return frame, path


@pytest.fixture(scope="module")
def space(items, encoder):
    frame, _ = items
    vectors = encoder.encode(frame["text"].to_list(), kind="passage")
    index = VectorIndex.build(vectors, frame["item_id"].to_list(), frame["lang"].to_list(),
                              kind="exact", fingerprint=encoder.fingerprint)
    return ItemSpace(index, dict(zip(frame["item_id"].to_list(), frame["text"].to_list())),
                     encoder=encoder)


@pytest.mark.slow
def test_similar_items_other_languages_finds_translations(items, space):
    frame, _ = items
    result = similar_items([0, 1, 2], k=4, other_languages=True, space=space)
    translations = 0
    for entry in result["queries"]:
        own = frame.filter(pl.col("item_id") == entry["id"])
        hits = entry["neighbours"]
        assert len(hits) == 4 and all(h["lang"] != own["lang"][0] for h in hits)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        top = frame.filter(pl.col("item_id") == hits[0]["id"])
        translations += top["index_id"][0] == own["index_id"][0]
    assert translations >= 2  # the nearest other-language item is usually the translation


@pytest.mark.slow
def test_similar_text_with_language_filter(items, space):
    frame, _ = items
    lang = frame["lang"][20]
    result = similar_texts([frame["text"][20]], k=3, languages=[lang], space=space)
    hits = result["queries"][0]["neighbours"]
    assert hits[0]["id"] == frame["item_id"][20] and {h["lang"] for h in hits} == {lang}
    other = similar_texts([frame["text"][20]], k=3, other_languages=True, query_lang=lang, space=space)
    assert all(h["lang"] != lang for h in other["queries"][0]["neighbours"])
    assert similar_texts(["x"], k=3, languages=["fi"], space=space)["queries"][0]["neighbours"] == []
    with pytest.raises(DataError, match="needs --lang"):
        similar_texts(["x"], other_languages=True, space=space)
    with pytest.raises(DataError, match="not in the index"):
        similar_items([10_000], space=space)
    with pytest.raises(DataError, match="integer ids"):
        similar_items(["abc"], space=space)


@pytest.mark.slow
def test_language_filter_naming_no_item_warns(items, space, caplog):
    frame, _ = items
    langs = sorted(frame["lang"].unique().to_list())
    with caplog.at_level("WARNING"):
        result = similar_items([0], k=3, languages=["fi", langs[1]], space=space)
    assert {h["lang"] for h in result["queries"][0]["neighbours"]} == {langs[1]}
    assert f"no item in the index has language 'fi'; it has: {', '.join(langs)}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        similar_items([0], k=3, languages=[langs[1]], space=space)
    assert "no item" not in caplog.text


@pytest.mark.slow
def test_cli_similar_items_then_saved_index(items, tmp_path, capsys):
    frame, path = items
    assert main(["similar", "--items", str(path), "--ids", "0", "--k", "3", "--other-languages",
                 "--save-index", str(tmp_path / "idx"), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["queries"][0]["id"] == 0 and len(out["queries"][0]["neighbours"]) == 3
    assert all(h["lang"] != frame["lang"][0] for h in out["queries"][0]["neighbours"])
    # the saved index answers free text without re-embedding the items; plain-text output
    assert main(["similar", "--index", str(tmp_path / "idx"), "--text", frame["text"][0],
                 "--k", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# ") and f" 0  {frame['text'][0][:20]}" in text.splitlines()[1]  # texts kept
    assert main(["similar", "--index", str(tmp_path / "idx"), "--ids", "999", "--k", "2"]) == 2
    assert "not in the index" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_similar_by_topic(items, tmp_path, capsys):
    """``--only-topics`` with ``--tags`` (the sentences' real SIB-200 categories) keeps only those topics."""
    frame, path = items
    tags = tmp_path / "tags.parquet"
    frame.select("item_id", pl.col("category").alias("topic")).write_parquet(tags)
    topic = frame["category"][5]
    assert main(["similar", "--items", str(path), "--ids", "0", "5", "--k", "4", "--tags", str(tags),
                 "--only-topics", topic, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    of = dict(zip(frame["item_id"].to_list(), frame["category"].to_list()))
    for query in out["queries"]:
        hits = query["neighbours"]
        assert len(hits) == min(4, sum(t == topic for i, t in of.items() if i != query["id"]))
        assert all(of[h["id"]] == topic and h["id"] != query["id"] for h in hits)
    assert main(["similar", "--items", str(path), "--ids", "0", "--tags", str(tags), "--only-topics", "nope"]) == 2
    assert "topics: ['nope']" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_similar_unbounded_k(items, tmp_path, capsys):
    """--k 10**12 lists every other item once instead of allocating k results per query."""
    frame, path = items
    assert main(["similar", "--items", str(path), "--ids", "0", "--k", str(10**12), "--format", "json",
                 "--save-index", str(tmp_path / "idx")]) == 0
    hits = json.loads(capsys.readouterr().out)["queries"][0]["neighbours"]
    assert sorted(h["id"] for h in hits) == list(range(1, frame.height))
    assert main(["similar", "--index", str(tmp_path / "idx"), "--ids", "0", "--k", str(10**12),
                 "--other-languages", "--format", "json"]) == 0
    hits = json.loads(capsys.readouterr().out)["queries"][0]["neighbours"]
    assert len(hits) == (frame["lang"] != frame["lang"][0]).sum()


def test_cli_bench_retrieval_small(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "retrieval", "--n", "600", "--dim", "16", "--queries", "20", "--single", "10",
                 "--kinds", "exact", "hnsw", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["n"] == 600 and payload["dim"] == 16
    names = [r["name"] for r in payload["results"]]
    assert any("numpy" in n for n in names) and any("hnswlib" in n for n in names)
    for row in payload["results"]:
        assert {"name", "build_s", "p50_ms", "p99_ms", "qps", "recall_at_10", "memory_mb"} <= set(row)
        assert 0 <= row["recall_at_10"] <= 1 and row["p50_ms"] > 0
    exact = next(r for r in payload["results"] if r["name"] == "xrec exact")
    assert exact["recall_at_10"] == 1.0
    summary = payload["summary"]
    # 600 vectors: both HNSWs reach recall 0.95 well within their ef sweeps, so the compared
    # points are always re-timed side by side
    assert "compared" in summary
    pair = summary["interleaved"]
    assert pair["ours"] == summary["compared"] and pair["ours_p50_ms"] > 0 and pair["hnswlib_p50_ms"] > 0
    assert summary["p50_vs_hnswlib_interleaved"] == pair["ours_p50_ms"] / pair["hnswlib_p50_ms"]
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert "recall@10" in capsys.readouterr().out


def test_bench_summary_compares_least_effort_points_not_noisy_p50():
    from xrec.bench.retrieval import Result, summarize

    def point(family, knob, effort, p50, recall):
        return Result(f"{family} {knob}={effort}", family, 1.0, p50, 2 * p50, 1000.0, recall, 10.0,
                      {knob: effort})

    results = [point("xrec hnsw", "ef_search", 16, 0.12, 0.94),   # below the recall bar
               point("xrec hnsw", "ef_search", 24, 0.15, 0.97),   # least effort above it
               point("xrec hnsw", "ef_search", 48, 0.14, 0.99),   # noise made it look faster
               point("hnswlib", "ef", 16, 0.11, 0.96), point("hnswlib", "ef", 32, 0.10, 0.98),
               Result("numpy exact", "numpy", 0.0, 9.0, 12.0, 900.0, 1.0, 146.0, {})]
    summary = summarize(results)
    assert summary["compared"] == "xrec hnsw ef_search=24"
    assert summary["hnswlib_best"]["name"] == "hnswlib ef=16"
    assert summary["p50_vs_hnswlib_at_equal_or_better_recall"] == pytest.approx(0.15 / 0.11)
    assert summary["best_approx_speedup_vs_numpy_p50"] == pytest.approx(9.0 / 0.15)


def test_cli_bench_on_user_vectors_and_bad_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "c.npy", rng.standard_normal((300, 8)).astype(np.float32))
    np.save(tmp_path / "q.npy", rng.standard_normal((10, 8)).astype(np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((10, 9), np.float32))
    assert main(["bench", "retrieval", "--vectors", str(tmp_path / "c.npy"), "--query-vectors",
                 str(tmp_path / "q.npy"), "--kinds", "exact", "--single", "5",
                 "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["n"] == 300
    assert main(["bench", "retrieval", "--vectors", str(tmp_path / "c.npy"), "--query-vectors",
                 str(tmp_path / "bad.npy"), "--json", str(tmp_path / "x.json")]) == 2
    assert "dimension" in capsys.readouterr().err


def test_retrieval_bench_takes_arrays_and_writes_nothing(tmp_path, monkeypatch):
    from xrec.bench.retrieval import run_retrieval_bench, write_outputs

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    corpus, queries = rng.standard_normal((200, 8)), rng.standard_normal((12, 8))
    payload = run_retrieval_bench(corpus, queries, kinds=["exact"], n_single=3, peers=False, source="test")
    assert payload["n"] == 200 and payload["queries"] == 12 and payload["source"] == "test"
    assert [r["name"] for r in payload["results"]] == ["xrec exact"] and payload["results"][0]["recall_at_10"] == 1.0
    assert not any(tmp_path.iterdir())
    write_outputs(payload, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(payload))
    assert (tmp_path / "r.png").is_file()
