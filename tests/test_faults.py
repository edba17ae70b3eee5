"""Fault injection: full disks, read-only directories, SIGKILL mid-write, concurrent writers and
forged artifacts (malformed rows and ids: tests/catalogue). What was written before a failure is
checked by hash.

Disk full and read-only use a small tmpfs mount where this machine allows it (root with mount
rights: the real ENOSPC / EROFS from the kernel); elsewhere the same errors are raised at the
write seam (``os.replace`` / ``tempfile.mkstemp``), which is what the kernel would report there.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from xrec.artifacts import check_writable, write_manifest
from xrec.cli.main import main
from xrec.errors import ArtifactError, DataError, WriteError
from xrec.ranking.batch import parts_dir
from xrec.store import read_embeddings, write_embeddings

REPO = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    """SHA-256 of a file, or of every file under a directory (names and bytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        h.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def _mount(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A directory on a 512 KiB file system (tmpfs where allowed, else ENOSPC simulated for files
    over 512 KiB written there). Yields ``(directory, real)``."""
    root = tmp_path / "full"
    real = _mount(root, "size=512k,mode=0777")
    if not real:
        import pyarrow.parquet as pq

        write = pq.write_table

        def no_space(table, where, *args, **kwargs):
            if str(root) in str(where) and table.nbytes > 512 * 1024:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
            return write(table, where, *args, **kwargs)

        monkeypatch.setattr(pq, "write_table", no_space)
    yield root, real
    if real:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A read-only directory (a read-only tmpfs where allowed, else EROFS simulated at
    ``tempfile.mkstemp``/``mkdtemp`` and ``open`` for writing there). Yields ``(directory, real)``."""
    root = tmp_path / "ro"
    real = _mount(root, "ro,size=64k")
    if not real:
        import tempfile

        def refuse(original):
            def wrapped(*args, dir=None, **kwargs):
                if dir is not None and str(dir).startswith(str(root)):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
                return original(*args, dir=dir, **kwargs)
            return wrapped

        monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))
        monkeypatch.setattr(tempfile, "mkdtemp", refuse(tempfile.mkdtemp))
    yield root, real
    if real:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.fixture
def items_csv(tmp_path) -> Path:
    path = tmp_path / "items.csv"
    path.write_text("item_id,text,lang\n1,Der Hund schläft.,de\n2,The dog sleeps.,en\n3,Le chat dort.,fr\n"
                    "4,El gato duerme.,es\n", encoding="utf-8")
    return path


def _no_encoder(monkeypatch, module: str) -> None:
    """Fail the test if ``module`` loads an encoder (the expensive work a write check must precede)."""
    def forbidden(*_, **__):
        raise AssertionError("the encoder was loaded before the output was checked")
    monkeypatch.setattr(f"xrec.cli.{module}.load_encoder", forbidden, raising=False)


# ---------------------------------------------------------------------- read-only, disk full
@pytest.mark.parametrize("command", ["embed", "similar", "recommend"])
def test_read_only_output_is_one_line_before_any_work(command, read_only, items_csv, monkeypatch, capsys):
    ro, _ = read_only
    _no_encoder(monkeypatch, "embed")
    monkeypatch.setattr("xrec.index.similar.ItemSpace.open", lambda *a, **k: pytest.fail("index built first"))
    monkeypatch.setattr("xrec.cli.recommend._fit_ranker", lambda *a, **k: pytest.fail("ranker fitted first"))
    argv = {"embed": ["embed", str(items_csv), "--out", str(ro / "e.parquet")],
            "similar": ["similar", "--items", str(items_csv), "--ids", "1", "--save-index", str(ro / "index")],
            "recommend": ["recommend", "--items", str(items_csv), "--interactions", str(items_csv),
                          "--out", str(ro / "recs.parquet")]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(ro) in err and "cannot write" in err, err
    assert "Read-only" in err


def test_a_read_only_store_is_refused_before_encoding(read_only, items_csv, capsys, caplog):
    ro, _ = read_only
    with caplog.at_level("INFO"):
        assert main(["similar", "--items", str(items_csv), "--ids", "1", "--store", str(ro / "e.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot write" in err and str(ro) in err, err
    assert "embedded" not in caplog.text  # refused before the encoder ran


def test_full_disk_is_refused_before_work(full_disk, items_csv, monkeypatch, capsys):
    root, _ = full_disk
    _no_encoder(monkeypatch, "embed")
    with pytest.raises(WriteError, match="free"):
        check_writable(root / "e.parquet")  # 512 KiB free is under the 16 MiB every command wants
    assert main(["embed", str(items_csv), "--out", str(root / "e.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "free" in err and str(root) in err


def test_a_disk_that_fills_mid_write_keeps_the_old_store(full_disk):
    root, _ = full_disk
    store = root / "e.parquet"
    write_embeddings(store, [1, 2, 3], np.eye(3, 8, dtype=np.float32), "fp")
    before = digest(store)
    big = np.random.default_rng(0).random((2000, 384), dtype=np.float32)  # 3 MB: does not fit
    with pytest.raises(WriteError) as caught:
        write_embeddings(store, list(range(2000)), big, "fp")
    assert str(store) in str(caught.value) and "\n" not in str(caught.value)
    assert "No space" in str(caught.value)
    assert digest(store) == before and read_embeddings(store).ids == [1, 2, 3]
    assert [p.name for p in root.iterdir()] == ["e.parquet"]  # no temporary file left


def test_a_full_disk_under_faiss_is_a_write_error_and_keeps_the_old_index(tmp_path, full_disk, encoder):
    from xrec.index import VectorIndex

    root, real = full_disk
    if not real:
        pytest.skip("FAISS writes through its own C++ I/O; a full disk needs a real tmpfs here")
    vectors = encoder.encode(["ein Hund", "a dog", "un chien"], "passage")
    path = root / "index"
    VectorIndex.build(vectors, [1, 2, 3], ["de", "en", "fr"], kind="exact", fingerprint=encoder.fingerprint).save(path)
    before = digest(path)
    big = np.random.default_rng(0).standard_normal((2000, vectors.shape[1])).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    with pytest.raises(WriteError) as caught:
        VectorIndex.build(big, list(range(2000)), ["en"] * 2000, kind="exact",
                          fingerprint=encoder.fingerprint).save(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert digest(path) == before and len(VectorIndex.load(path)) == 3


# ---------------------------------------------------------------------- SIGKILL mid-write
KILLED_WRITER = textwrap.dedent("""
    import importlib, os, signal, sys
    where = sys.argv[1]
    kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if where.startswith("replace:"):  # a file: killed when complete, before its rename
        real_replace = os.replace
        def replace(src, dst, *a, **k):
            if os.path.basename(str(dst)) == where[8:]:
                kill()
            return real_replace(src, dst, *a, **k)
        os.replace = replace
    else:  # "manifest:MODULE": the artifact directory MODULE writes, killed once its manifest
        module = importlib.import_module(where[9:])  # is written, before it is swapped in
        real_manifest = module.write_manifest
        def write_manifest(*a, **k):
            real_manifest(*a, **k)
            kill()
        module.write_manifest = write_manifest
    from xrec.cli.main import main
    sys.exit(main(sys.argv[2:]))
""")


def _killed(where: str, argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``xrec argv`` in a process that SIGKILLs itself at ``where`` (see KILLED_WRITER)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-c", KILLED_WRITER, where, *argv], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.slow
def test_sigkill_during_embed_and_save_index_changes_nothing(tmp_path, items_csv, encoder):
    store, index = tmp_path / "e.parquet", tmp_path / "index"
    assert main(["embed", str(items_csv), "--out", str(store)]) == 0
    assert main(["similar", "--items", str(items_csv), "--ids", "1", "--save-index", str(index),
                 "--format", "json"]) == 0
    before = {store: digest(store), index: digest(index)}
    grown = tmp_path / "grown.csv"
    grown.write_text(items_csv.read_text(encoding="utf-8") + "5,Il cane dorme.,it\n", encoding="utf-8")
    for target, where, argv in (
            (store, "replace:e.parquet", ["embed", str(grown), "--out", str(store)]),
            (index, "manifest:xrec.index.persist",
             ["similar", "--items", str(grown), "--ids", "5", "--save-index", str(index)])):
        done = _killed(where, argv)
        assert done.returncode == -9, done.stderr[-2000:]
        assert digest(target) == before[target], f"{target} changed by a killed writer"
    assert read_embeddings(store).ids == [1, 2, 3, 4]
    # the corrected re-runs are not blocked by what the killed ones left
    assert main(["embed", str(grown), "--out", str(store)]) == 0
    assert read_embeddings(store).ids == [1, 2, 3, 4, 5]
    assert main(["similar", "--items", str(grown), "--ids", "5", "--save-index", str(index), "--format", "json"]) == 0


SHOP = REPO / "data" / "catalogues" / "shop"
SHOP_ARGS = ["--items", str(SHOP / "items.csv"), "--interactions", str(SHOP / "interactions.csv"),
             "--template", "{title}. {description}"]


def _kill_then_rerun(target: Path, where: str, argv: list[str], load) -> None:
    """SIGKILL ``xrec argv`` at ``where``: ``target`` (an earlier good output) keeps its bytes and
    loads (``load(target)``); then the same command, not killed, completes."""
    before = digest(target)
    done = _killed(where, argv)
    assert done.returncode == -9, done.stderr[-2000:]
    assert digest(target) == before, f"{target} changed by a killed writer"
    load(target)
    assert main(argv) == 0, f"the re-run of {argv[0]} after a killed one failed"
    load(target)


@pytest.mark.slow
def test_sigkill_during_fit_keeps_the_earlier_ranker(tmp_path):
    from xrec.ranking.hybrid import HybridRanker

    ranker, store = tmp_path / "ranker", tmp_path / "e.parquet"
    assert main(["fit", *SHOP_ARGS, "--out", str(ranker), "--store", str(store)]) == 0
    first = digest(ranker)
    # another ranker (brand links items) over the earlier one: killed once complete, before its swap
    _kill_then_rerun(ranker, "manifest:xrec.ranking.persist",
                     ["fit", *SHOP_ARGS, "--metadata", "brand", "--out", str(ranker), "--store", str(store)],
                     HybridRanker.load)
    assert digest(ranker) != first  # the re-run replaced it
    assert json.loads((ranker / "ranker.json").read_text(encoding="utf-8"))["metadata_fields"] == ["brand"]


@pytest.mark.slow
def test_sigkill_during_topics_train_and_tag_keeps_the_earlier_outputs(tmp_path, topic_table, topic_model):
    import shutil

    from xrec.topics.classifier import TopicClassifier

    model, tagged = tmp_path / "topics", tmp_path / "tagged.parquet"
    shutil.copytree(topic_model, model)
    items = tmp_path / "items.csv"
    pl.read_csv(topic_table).with_row_index("item_id").head(10).write_csv(items)
    assert main(["tag", "--items", str(items), "--topic-model", str(model), "--out", str(tagged)]) == 0
    _kill_then_rerun(model, "manifest:xrec.topics.classifier",
                     ["topics", "train", "--data", str(topic_table), "--threshold", "0.3", "--out", str(model)],
                     TopicClassifier.load)
    assert TopicClassifier.load(model).threshold == 0.3  # the re-run's model replaced the earlier one
    # a tagged table over the earlier one (every item now, with --abstain): killed before its rename
    pl.read_csv(topic_table).with_row_index("item_id").write_csv(items)
    _kill_then_rerun(tagged, "replace:tagged.parquet",
                     ["tag", "--items", str(items), "--topic-model", str(model), "--out", str(tagged), "--abstain"],
                     pl.read_parquet)
    assert pl.read_parquet(tagged).height == pl.read_csv(items).height


@pytest.mark.slow
def test_sigkill_during_recommend_resumes_to_the_uninterrupted_bytes(tmp_path):
    ranker, recs = tmp_path / "ranker", tmp_path / "recs.parquet"
    assert main(["fit", *SHOP_ARGS, "--out", str(ranker), "--store", str(tmp_path / "e.parquet")]) == 0
    run = ["recommend", "--ranker", str(ranker), "--batch-size", "8"]
    assert main([*run, "--k", "3", "--out", str(recs)]) == 0
    earlier = pl.read_parquet(recs)
    argv = [*run, "--k", "5", "--out", str(recs)]
    # killed before the rename of its third batch (two finished), then once every batch is done and
    # the output complete but not yet renamed: the earlier output is untouched both times
    before, finished = digest(recs), []
    for where in ("replace:part-000002.parquet", "replace:recs.parquet"):
        done = _killed(where, argv)
        assert done.returncode == -9, done.stderr[-2000:]
        assert digest(recs) == before and pl.read_parquet(recs).equals(earlier)
        finished.append(len(list(parts_dir(recs).glob("part-*.parquet"))))
    assert finished == [2, 5]  # 34 users in batches of 8
    assert main(argv) == 0 and not parts_dir(recs).exists()
    whole = tmp_path / "whole.parquet"
    assert main([*run, "--k", "5", "--out", str(whole)]) == 0
    assert recs.read_bytes() == whole.read_bytes()  # resumed twice: byte for byte the uninterrupted run


# ---------------------------------------------------------------------- one id rule, one store
@pytest.mark.slow
def test_a_store_refuses_another_id_type_and_keeps_its_rows(tmp_path, items_csv, encoder, capsys):
    store = tmp_path / "shared.parquet"
    assert main(["embed", str(items_csv), "--out", str(store)]) == 0
    before = digest(store)
    other = tmp_path / "other.csv"
    other.write_text("item_id,text\nb1,A book.\nb2,Another book.\n", encoding="utf-8")
    assert main(["embed", str(other), "--out", str(store)]) == 2
    err = capsys.readouterr().err
    assert "int ids" in err and "str ids" in err and "unchanged" in err
    assert main(["similar", "--items", str(other), "--ids", "b1", "--store", str(store)]) == 2
    assert digest(store) == before and read_embeddings(store).ids == [1, 2, 3, 4]


@pytest.mark.slow
def test_concurrent_writers_of_two_id_types_never_empty_the_store(tmp_path, encoder):
    """Both pass the early check on an empty store; the second to merge is refused under the lock."""
    from concurrent.futures import ThreadPoolExecutor

    from xrec.store import embed_items

    store = tmp_path / "shared.parquet"
    catalogues = [([1, 2, 3], ["ein Hund", "a dog", "un chien"]), (["b1", "b2"], ["a book", "un livre"])]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(embed_items, encoder, ids, texts, store=store) for ids, texts in catalogues]
        outcomes = [f.exception() for f in futures]
    refused = [e for e in outcomes if e is not None]
    assert len(refused) == 1 and isinstance(refused[0], DataError) and "unchanged" in str(refused[0])
    winner = catalogues[outcomes.index(None)][0]
    assert read_embeddings(store).ids == winner


@pytest.mark.slow
def test_similar_ids_follow_the_rule(tmp_path, items_csv, capsys, encoder):
    index = tmp_path / "index"
    assert main(["similar", "--items", str(items_csv), "--ids", "1", "--k", "2", "--save-index", str(index)]) == 0
    for given, why in (("1.0", "float"), (" 1", "whitespace"), ("nan", "float"), ("abc", "not an integer")):
        capsys.readouterr()
        assert main(["similar", "--index", str(index), "--ids", given]) == 2
        assert why in capsys.readouterr().err


# ---------------------------------------------------------------------- forged artifacts, partial outputs
@pytest.fixture(scope="module")
def ranker_dir(serve_catalogue):
    return serve_catalogue["ranker"]  # read-only: the tests below copy it before forging


@pytest.mark.slow
def test_a_ranker_with_nan_factors_is_refused_even_with_a_rewritten_manifest(ranker_dir, tmp_path):
    import shutil

    from xrec.ranking.hybrid import HybridRanker

    forged = tmp_path / "ranker"
    shutil.copytree(ranker_dir, forged)
    factors = np.load(forged / "cf_item_factors.npy")
    factors[3, 1] = np.nan
    np.save(forged / "cf_item_factors.npy", factors, allow_pickle=False)
    _rehash(forged)
    with pytest.raises(ArtifactError, match=r"cf_item_factors.npy: 1 value\(s\) are NaN"):
        HybridRanker.load(forged)
    # the graphs, the lexical terms and every other saved float array too
    shutil.rmtree(forged)
    shutil.copytree(ranker_dir, forged)
    graph = next((forged / "graphs").glob("content.*.data.npy"))
    data = np.load(graph)
    data[0] = np.inf
    np.save(graph, data, allow_pickle=False)
    _rehash(forged)
    with pytest.raises(ArtifactError, match=rf"{graph.name}: 1 value\(s\) are NaN or infinite"):
        HybridRanker.load(forged)


def _rehash(directory: Path) -> None:
    """Rewrite ``directory``'s manifest so that its checksums match the forged files again."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    fields = {k: v for k, v in manifest.items() if k not in ("kind", "format_version", "files")}
    write_manifest(directory, manifest["kind"], manifest["format_version"], fields)


@pytest.mark.slow  # needs a trained topic model (conftest's, about 6 s)
def test_a_topic_model_with_nan_weights_is_refused_even_with_a_rewritten_manifest(topic_model, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file
    from xrec.topics.classifier import WEIGHTS, TopicClassifier

    for name, forge in (("tensor", "head0"), ("tensor", "centering.means"), ("manifest", "temperature")):
        forged = tmp_path / f"{forge}"
        shutil.copytree(topic_model, forged)
        if name == "tensor":
            tensors = load_file(str(forged / WEIGHTS))
            key = next(k for k, v in sorted(tensors.items()) if k.startswith(forge) and v.is_floating_point())
            tensors[key].view(-1)[1] = float("inf") if forge == "head0" else float("nan")
            save_file(tensors, str(forged / WEIGHTS))
            expected = rf"{WEIGHTS}: tensor '{key}': 1 value\(s\) are NaN or infinite"
        else:
            manifest = json.loads((forged / "manifest.json").read_text(encoding="utf-8"))
            (forged / "manifest.json").write_text(json.dumps({**manifest, "temperature": float("nan")}))
            expected = r"manifest.json: temperature, threshold, head_weights: 1 value\(s\) are NaN"
        _rehash(forged)
        with pytest.raises(ArtifactError, match=expected):
            TopicClassifier.load(forged)


def _forge_nan(index, slot: int) -> None:
    """Set one component of ``slot``'s stored vector to NaN in ``index``'s own storage (float32
    rows of an exact index or an IVF list, float16 codes of ``hnsw``)."""
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    if isinstance(inner, faiss.IndexIVF):
        lists = inner.invlists
        for number in range(inner.nlist):
            size = lists.list_size(number)
            found = np.flatnonzero(faiss.rev_swig_ptr(lists.get_ids(number), size) == slot) if size else []
            if len(found):
                codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size)
                codes.view(np.float32)[found[0] * index.d + 1] = np.nan
        return
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    codes = faiss.vector_to_array(inner.codes)
    codes.view(np.float32 if isinstance(inner, faiss.IndexFlat) else np.float16)[slot * index.d + 1] = np.nan
    faiss.copy_array_to_vector(codes, inner.codes)


@pytest.mark.parametrize(("kind", "forged"), [("exact", "vector"), ("hnsw", "vector"), ("ivf", "vector"),
                                               ("ivf", "centroid")])
def test_an_index_with_nan_vectors_is_refused_even_with_a_rewritten_manifest(kind, forged, tmp_path):
    import faiss
    from xrec.index import VectorIndex

    vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    path = tmp_path / "index"
    VectorIndex.build(vectors, [f"i{n}" for n in range(300)], None, kind=kind, fingerprint="fp").save(path)
    assert len(VectorIndex.load(path)) == 300
    index = faiss.read_index(str(path / "index.faiss"))
    if forged == "vector":
        _forge_nan(index, 7)
        expected = r"index.faiss: 1 stored vector\(s\) hold NaN or infinite values \(first: item 'i7'\)"
    else:
        centroids = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
        faiss.rev_swig_ptr(centroids.get_xb(), centroids.ntotal * index.d)[3] = np.inf
        expected = r"index.faiss: 1 IVF centroid\(s\) hold NaN or infinite values"
    faiss.write_index(index, str(path / "index.faiss"))
    _rehash(path)
    with pytest.raises(ArtifactError, match=expected):
        VectorIndex.load(path)


def test_a_store_with_nan_vectors_is_not_trusted(tmp_path):
    store = tmp_path / "e.parquet"
    vectors = np.eye(2, 4, dtype=np.float32)
    vectors[1, 2] = np.inf
    write_embeddings(store, [1, 2], vectors, "fp")
    with pytest.raises(ArtifactError, match="NaN or infinite"):
        read_embeddings(store)


@pytest.mark.slow
def test_a_run_failing_in_its_first_batch_does_not_block_the_corrected_run(ranker_dir, tmp_path):
    from xrec.ranking.batch import recommend_to_parquet
    from xrec.ranking.hybrid import HybridRanker

    ranker = HybridRanker.load(ranker_dir)
    users = ranker.users.ids.head(30)
    out = tmp_path / "recs.parquet"
    with pytest.raises(DataError):
        recommend_to_parquet(ranker, users, 5, out, batch_size=10, languages=["no-such-language"])
    assert not parts_dir(out).exists() and not out.exists()
    assert recommend_to_parquet(ranker, users, 5, out, batch_size=10) == out
    assert pl.read_parquet(out).height == 30 * 5
