"""Embedding store and ``xrec embed``: real encoder, real sample items."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.items import validate_items
from xrec.catalogue.tables import read_table
from xrec.cli.main import main
from xrec.errors import ArtifactError, DataError
from xrec.store import embed_items, read_embeddings, write_embeddings


@pytest.fixture(scope="module")
def items(data_dir) -> pl.DataFrame:
    """Twelve real SIB-200 sentences in several languages and scripts."""
    rows = [json.loads(line) for line in gzip.open(data_dir / "sib200" / "dev.jsonl.gz", "rt", encoding="utf-8")]
    picked = [r for r in rows if r["index_id"] == rows[0]["index_id"]][:12]
    return pl.DataFrame({"item_id": [f"{r['lang']}-{r['index_id']}" for r in picked],
                         "text": [r["text"] for r in picked], "lang": [r["lang"] for r in picked]})


class CountingEncoder:
    """Wraps the real encoder and records how many texts it was asked to embed."""

    def __init__(self, inner):
        self.inner, self.dim, self.fingerprint, self.name = inner, inner.dim, inner.fingerprint, inner.name
        self.path = inner.path  # the path its vectors come from: stores reuse only that path's vectors
        self.calls: list[int] = []

    def encode(self, texts, kind="passage", *, batch_size=None, progress=None):
        self.calls.append(len(texts))
        return self.inner.encode(texts, kind, batch_size=batch_size, progress=progress)


def test_second_run_embeds_only_new_or_changed(encoder, items, tmp_path):
    store = tmp_path / "emb.parquet"
    counting = CountingEncoder(encoder)
    first = embed_items(counting, items["item_id"].to_list(), items["text"].to_list(), store=store)
    assert counting.calls == [len(items)]
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)

    ids = items["item_id"].to_list() + ["new-item"]
    texts = items["text"].to_list() + ["Ein ganz neuer Artikel über Fußball."]
    texts[0] = texts[0] + " (edited)"
    second = embed_items(counting, ids, texts, store=store)
    assert counting.calls == [len(items), 2]  # the edited item and the new one
    np.testing.assert_array_equal(second[1:len(items)], first[1:])
    assert not np.allclose(second[0], first[0])

    stored = read_embeddings(store, expect_fingerprint=encoder.fingerprint)
    assert stored.ids == ids and stored.vectors.shape == (len(ids), encoder.dim)

    # another version of the catalogue (other ids, same texts) reuses the first store's vectors
    other = embed_items(counting, [f"v2-{i}" for i in ids], texts, store=tmp_path / "v2.parquet",
                        reuse=[store])
    assert counting.calls == [len(items), 2]
    np.testing.assert_array_equal(other, second)


class _WriterDuringEncode(CountingEncoder):
    """A real encoder during whose encoding another writer adds its rows to the same store."""

    def __init__(self, inner, other):
        super().__init__(inner)
        self.other = other

    def encode(self, texts, kind="passage", *, batch_size=None, progress=None):
        if self.other is not None:
            other, self.other = self.other, None
            other()
        return super().encode(texts, kind, batch_size=batch_size, progress=progress)


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(encoder, items, tmp_path):
    store = tmp_path / "shared.parquet"
    ids, texts = items["item_id"].to_list(), items["text"].to_list()
    mine, theirs = slice(0, 6), slice(6, 12)
    writer = _WriterDuringEncode(encoder, lambda: embed_items(encoder, ids[theirs], texts[theirs], store=store))
    embed_items(writer, ids[mine], texts[mine], store=store)
    stored = read_embeddings(store, expect_fingerprint=encoder.fingerprint)
    assert stored.ids[:6] == ids[mine] and sorted(stored.ids) == sorted(ids)  # both writers' rows
    # and the merged store serves both catalogues without embedding anything again
    counting = CountingEncoder(encoder)
    again = embed_items(counting, ids, texts, store=store)
    assert counting.calls == [] and again.shape == (12, encoder.dim)


@pytest.mark.slow
def test_writer_processes_share_one_store_under_its_lock(encoder, items, tmp_path):
    """Four processes merging rows into one store, many times each: every row survives."""
    import multiprocessing

    ids, texts = items["item_id"].to_list(), items["text"].to_list()
    vectors = encoder.encode(texts)
    store = tmp_path / "shared.parquet"
    context = multiprocessing.get_context("spawn")
    jobs = [context.Process(target=_merge_rows, args=(store, ids[w::4], vectors[w::4], encoder.fingerprint))
            for w in range(4)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(120)
    assert [job.exitcode for job in jobs] == [0] * 4
    stored = read_embeddings(store)
    assert sorted(stored.ids) == sorted(ids) and len(stored.ids) == len(ids)


def _merge_rows(store, ids, vectors, fingerprint):
    from xrec.store import _merge_into, text_hash

    for row, item in enumerate(ids):  # one row at a time: many chances to lose an update
        _merge_into(store, [item], vectors[row:row + 1], [text_hash(item)], fingerprint)


def test_discarded_stores_are_reported(encoder, tmp_path, caplog):
    store = tmp_path / "emb.parquet"
    write_embeddings(store, [1, 2], np.eye(2, 4, dtype=np.float32), "some-other-model")
    with caplog.at_level("WARNING"):
        embed_items(encoder, [1, 2], ["a", "b"], store=store)
    assert f"embedding store {store} is not used and will be replaced" in caplog.text
    assert "some-other-model" in caplog.text
    caplog.clear()
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        embed_items(encoder, [1, 2], ["a", "b"], store=store)
    assert "truncated" in caplog.text
    assert read_embeddings(store, expect_fingerprint=encoder.fingerprint).ids == [1, 2]


def test_store_refuses_other_encoder_and_truncation(encoder, items, tmp_path):
    store = tmp_path / "emb.parquet"
    write_embeddings(store, [1, 2], np.eye(2, 4, dtype=np.float32), "some-other-model")
    with pytest.raises(ArtifactError, match="some-other-model"):
        read_embeddings(store, expect_fingerprint=encoder.fingerprint)
    # embed_items never trusts another encoder's vectors: it re-embeds and replaces the file
    vectors = embed_items(encoder, [1, 2], ["a", "b"], store=store)
    assert vectors.shape == (2, encoder.dim)
    assert read_embeddings(store).fingerprint == encoder.fingerprint

    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        read_embeddings(store)


def test_bad_items_name_row_and_column(encoder, tmp_path):
    with pytest.raises(DataError, match="row 1: duplicate item_id 'a'"):
        embed_items(encoder, ["a", "a"], ["x", "y"])
    with pytest.raises(DataError, match="row 1"):
        embed_items(encoder, ["a", "b"], ["x", None])
    frame = pl.DataFrame({"item_id": [1, 2, 3], "text": ["a", None, "c"]})
    with pytest.raises(DataError, match=r"row 1 \(item_id 2\): text is null"):
        validate_items(frame, "items.csv")
    path = tmp_path / "items.csv"
    pl.DataFrame({"item_id": [1], "title": ["x"]}).write_csv(path)
    with pytest.raises(DataError, match=r"items.csv: missing column\(s\) \['text'\]"):
        read_table(path, required=["item_id", "text"])


def test_item_errors_name_the_files_own_lines(tmp_path):
    """Errors count lines as an editor does (header included), and name the line of bad bytes."""
    from xrec.catalogue.items import load_items

    csv = tmp_path / "items.csv"
    csv.write_text('item_id,text\n1,"a headline\nover two lines"\n2,b\n2,c\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"items\.csv: line 5: duplicate item_id 2 \(first at line 4\)"):
        load_items(csv)
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text('{"item_id": 1, "text": "a"}\n{"item_id": 2, "text": "b"}\n{"item_id": 1, "text": "c"}\n',
                     encoding="utf-8")
    with pytest.raises(DataError, match=r"items\.jsonl: line 3: duplicate item_id 1 \(first at line 1\)"):
        validate_items(read_table(jsonl), str(jsonl))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("item_id,text\n1,plain\n2,caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv: line 3, byte 6: not UTF-8"):
        load_items(latin1)


def test_empty_strings_are_embedded_not_dropped(encoder):
    vectors = embed_items(encoder, [1, 2], ["", "hello"])
    assert vectors.shape == (2, encoder.dim) and np.isfinite(vectors).all()


@pytest.mark.slow
def test_embed_cli_writes_input_order(items, tmp_path, capsys):
    src = tmp_path / "items.jsonl"
    items.write_ndjson(src)
    out = tmp_path / "out.parquet"
    assert main(["embed", str(src), "--out", str(out)]) == 0
    written = pl.read_parquet(out)
    assert written["item_id"].to_list() == items["item_id"].to_list()
    assert written.columns[:2] == ["item_id", "embedding"]
    vectors = np.asarray(written["embedding"].to_list(), dtype=np.float32)
    # parallel sentences: every translation is closer to its siblings than to unrelated text
    assert (vectors @ vectors.T).min() > 0.7


def test_embed_cli_reports_bad_input(tmp_path, capsys):
    src = tmp_path / "items.csv"
    pl.DataFrame({"item_id": [1, 1], "text": ["a", "b"]}).write_csv(src)
    assert main(["embed", str(src), "--out", str(tmp_path / "o.parquet")]) == 2
    assert "duplicate item_id 1" in capsys.readouterr().err


def test_atomic_writes_keep_ordinary_permissions(tmp_path):
    import os

    from xrec.artifacts import atomic_dir, atomic_file

    mask = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_failed_atomic_writes_leave_the_old_artifact_intact(tmp_path):
    from xrec.artifacts import atomic_dir, atomic_file

    (tmp_path / "f.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "f.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed midway")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed midway")
    assert (tmp_path / "f.txt").read_text() == "old" and (tmp_path / "d" / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.txt"]  # no temporary leftovers
