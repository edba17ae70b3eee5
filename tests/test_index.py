"""VectorIndex: one contract test mixin run against every index kind and every backend present."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from xrec.errors import ArtifactError, DataError, XrecError
from xrec.index import PAD_INT, VectorIndex, kinds
from xrec.index import gpu as gpu_backends

N, DIM = 1500, 32
LANGS = ("en", "de", "fr", "sw")


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 30 random centres (neighbourhoods like real embeddings have)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, dim))
    x = centres[rng.integers(0, 30, n)] + 0.8 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None):
    """Exact top-k ids by inner product among rows where ``mask``."""
    sims = q @ x.T
    if mask is not None:
        sims[:, ~mask] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(sims, order, axis=1)


@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM)
    ids = np.arange(10, 10 + N, dtype=np.int64)
    langs = np.array([LANGS[i % len(LANGS)] if i % 7 else "eu" for i in range(N)], dtype=object)
    langs[5] = None  # an item without a language
    return x, ids, langs


@pytest.fixture(scope="module")
def built() -> dict:
    """Indexes built once per kind; tests get copies."""
    return {}


BACKENDS = [pytest.param("cpu", id="cpu"),
            pytest.param("faiss-gpu", id="faiss-gpu", marks=pytest.mark.gpu),
            pytest.param("torch-cuda", id="torch-cuda", marks=pytest.mark.gpu)]


class IndexContract:
    """Behaviour every (kind, backend) pair must show."""

    kind: str
    knobs: dict

    @pytest.fixture(params=BACKENDS)
    def backend(self, request):
        if request.param not in gpu_backends.available_backends():
            pytest.skip(f"backend {request.param} not available here")
        return request.param

    @pytest.fixture
    def index(self, built, data, backend):
        if self.kind not in built:
            x, ids, langs = data
            built[self.kind] = VectorIndex.build(x, ids, list(langs), kind=self.kind, device="cpu",
                                                 fingerprint="fp-test", **self.knobs)
        return built[self.kind].copy(device=backend)  # tests may add and remove items

    def min_recall(self) -> float:
        return 0.85 if self.kind == "ivfpq" else 0.97

    def check_close(self, got, want):
        recall = np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want)])
        assert recall >= self.min_recall(), recall

    def test_search_matches_brute_force(self, index, data):
        x, ids, _ = data
        got, scores = index.search(x[:40], 10)
        want, want_scores = brute(x, ids, x[:40], 10)
        assert got.shape == scores.shape == (40, 10) and got.dtype == np.int64
        assert scores.dtype == np.float32 and np.all(np.diff(scores, axis=1) <= 1e-5)
        assert (got[:, 0] == ids[:40]).mean() >= 0.95  # each vector finds itself
        self.check_close(got, want)

    def test_language_filter_is_exact(self, index, data):
        x, ids, langs = data
        got, scores = index.search(x[:30], 10, languages=["eu"])
        mask = langs == "eu"
        assert np.isin(got, ids[mask]).all()  # k results, all from the allowed language
        want, _ = brute(x, ids, x[:30], 10, mask)
        self.check_close(got, want)
        got2, _ = index.search(x[:30], 10, exclude_languages=["en", "de", "fr", "sw"])
        allowed = set(ids[np.array([lang not in LANGS for lang in langs])])
        assert set(got2.ravel()) <= allowed and (got2 != PAD_INT).all()

    def test_tiny_language_returns_all_of_it(self, index, data):
        x, ids, langs = data
        got, scores = index.search(x[:3], 5, languages=["eu", "fi"])
        assert (got != PAD_INT).all()
        index.add(x[:2] * -1, [1, 2], ["is", "is"])
        got, scores = index.search(x[:3], 5, languages="is")
        assert sorted(got[0, :2]) == [1, 2] and (got[:, 2:] == PAD_INT).all()
        assert np.isneginf(scores[:, 2:]).all()

    def test_unknown_language_gives_empty_rows(self, index, data):
        x, _, _ = data
        got, scores = index.search(x[:2], 4, languages=["mt"])
        assert (got == PAD_INT).all() and np.isneginf(scores).all()
        unfiltered, _ = index.search(x[:2], 4)
        same, _ = index.search(x[:2], 4, exclude_languages=["mt"])
        assert (same == unfiltered).all()

    def test_exclude_ids_shared_and_per_query(self, index, data):
        x, ids, _ = data
        top, _ = index.search(x[:5], 10)
        shared, _ = index.search(x[:5], 10, exclude_ids=list(top[:, 0]) + [999_999])  # unknown ignored
        assert not np.isin(shared, top[:, 0]).any() and (shared != PAD_INT).all()
        per_query = [list(row[:8]) for row in top]
        got, _ = index.search(x[:5], 10, exclude_ids=per_query)
        for row, excluded in zip(got, per_query):
            assert not set(row) & set(excluded) and (row != PAD_INT).all()
        mask = np.ones(N, bool)
        mask[np.isin(ids, per_query[0])] = False
        want, _ = brute(x, ids, x[:1], 10, mask)
        self.check_close(got[:1], want)

    def test_only_ids_keeps_exactly_those_items(self, index, data):
        x, ids, _ = data
        subset = ids[::7]
        got, scores = index.search(x[:5], 10, only_ids=list(subset) + [999_999])  # unknown ignored
        assert np.isin(got, subset).all()
        mask = np.isin(ids, subset)
        want, _ = brute(x, ids, x[:5], 10, mask)
        self.check_close(got, want)
        per_query = [[row[0]] for row in got]
        got2, _ = index.search(x[:5], 10, only_ids=subset, exclude_ids=per_query)
        for row, dropped in zip(got2, per_query):
            assert dropped[0] not in row and np.isin(row, subset).all()
        few, _ = index.search(x[:1], 10, only_ids=subset[:3])
        assert set(few[0][:3]) == set(subset[:3]) and (few[0][3:] == PAD_INT).all()
        with pytest.raises(DataError, match="only_ids"):
            index.search(x[:1], 10, only_ids="abc")

    def test_exclusions_never_cut_below_k(self, index, data):
        x, ids, langs = data
        rare = ids[langs == "eu"]
        keep = rare[:12]
        got, _ = index.search(x[:2], 10, languages="eu", exclude_ids=[list(rare[12:]), list(rare[12:])])
        assert set(got[0]) <= set(keep) and len(set(got[0])) == 10
        got, _ = index.search(x[:1], 20, languages="eu", exclude_ids=[list(rare[12:])])
        assert set(got[0][:12]) == set(keep) and (got[0][12:] == PAD_INT).all()

    def test_k_larger_than_index_is_capped_and_filters_pad(self, index, data):
        x, ids, langs = data
        # k = 10**12 is cut to the index's size, without allocating k columns
        got, scores = index.search(x[:2], 10**12, languages="eu", exclude_ids=[ids[0]])
        assert got.shape == scores.shape == (2, N)
        rare = set(ids[langs == "eu"]) - {ids[0]}
        found = got[0][got[0] != PAD_INT]
        assert set(found) <= rare and len(found) >= 0.9 * len(rare)  # approximate kinds may miss a few
        assert (got[:, len(rare):] == PAD_INT).all() and np.isneginf(scores[:, len(rare):]).all()

    def test_remove_and_add(self, index, data):
        x, ids, _ = data
        assert index.remove(ids[:3]) == 3 and len(index) == N - 3
        got, _ = index.search(x[:3], 5)
        assert not np.isin(got, ids[:3]).any()
        index.add(x[:3], ids[:3], ["en"] * 3)
        got, _ = index.search(x[:3], 1)
        assert (got[:, 0] == ids[:3]).mean() >= 2 / 3
        with pytest.raises(DataError, match="already in the index"):
            index.add(x[:1], ids[:1])
        with pytest.raises(DataError, match="not in the index"):
            index.remove([123_456_789])

    def test_save_load_roundtrip(self, index, data, tmp_path):
        x, ids, langs = data
        index.remove(ids[:2])
        before = index.search(x[:10], 5, languages=["de", "fr"])
        index.save(tmp_path / "idx")
        loaded = VectorIndex.load(tmp_path / "idx", encoder_fingerprint="fp-test", device=index.backend)
        after = loaded.search(x[:10], 5, languages=["de", "fr"])
        assert (before[0] == after[0]).all() and np.allclose(before[1], after[1], atol=1e-5)
        assert len(loaded) == N - 2 and loaded.languages == index.languages
        assert (loaded.ids == index.ids).all()


class TestExact(IndexContract):
    kind, knobs = "exact", {}


class TestHNSW(IndexContract):
    kind, knobs = "hnsw", {"ef_search": 256}


class TestIVF(IndexContract):
    kind, knobs = "ivf", {"nlist": 16, "nprobe": 16}


@pytest.mark.slow  # training the product quantiser is the cost; the other kinds keep the contract fast
class TestIVFPQ(IndexContract):
    kind, knobs = "ivfpq", {"nlist": 16, "nprobe": 16, "k_factor": 16}


# ---------------------------------------------------------------- ids, kinds, knobs
def test_string_ids_pad_with_none(data):
    x, _, _ = data
    idx = VectorIndex.build(x[:5], [f"item{i}" for i in range(5)], kind="exact")
    got, scores = idx.search(x[:1], 8, exclude_ids=["item0", "nope"])
    assert got.dtype == object and got.shape == (1, 5) and list(got[0, 4:]) == [None]
    assert set(got[0, :4]) == {"item1", "item2", "item3", "item4"}
    with pytest.raises(DataError, match="mixes integer and string"):
        VectorIndex.build(x[:2], [1, "a"])
    with pytest.raises(DataError, match="holds str ids"):
        idx.add(x[:1], [7])


def test_auto_kind_and_factory_strings(data):
    x, ids, _ = data
    assert VectorIndex.build(x, ids).kind == "exact"
    assert kinds.auto_kind(10_000_000) == "hnsw"
    custom = VectorIndex.build(x, ids, kind="HNSW8,SQ8")
    got, _ = custom.search(x[:20], 1)
    assert (got[:, 0] == ids[:20]).mean() >= 0.9
    with pytest.raises(DataError, match="not a kind"):
        VectorIndex.build(x, ids, kind="NoSuchIndex")
    with pytest.raises(DataError, match="unknown index knob"):
        VectorIndex.build(x, ids, kind="hnsw", efsearch=3)


def test_large_add_goes_in_chunks_and_keeps_every_id(monkeypatch):
    from xrec.index import vector_index

    monkeypatch.setattr(vector_index, "ADD_CHUNK", 1000)
    x = clustered(3500, 16, seed=3)
    ids = np.arange(3500, dtype=np.int64)[::-1].copy()
    idx = VectorIndex.build(x, ids, kind="hnsw", m=8)
    got, _ = idx.search(x[::50], 1)
    assert len(idx) == 3500 and (got[:, 0] == ids[::50]).mean() >= 0.95
    idx.add(clustered(1500, 16, seed=4), np.arange(3500, 5000))
    got, _ = idx.search(x[::50], 1)
    assert len(idx) == 5000 and (got[:, 0] == ids[::50]).mean() >= 0.95


def test_query_knobs_change_hnsw_effort(data):
    x, ids, _ = data
    idx = VectorIndex.build(x, ids, kind="hnsw", m=4, ef_construction=8)
    want, _ = brute(x, ids, x[:100], 10)
    recall = {}
    for ef in (10, 400):
        idx.set_knobs(ef_search=ef)
        got, _ = idx.search(x[:100], 10)
        recall[ef] = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall[400] > recall[10] and recall[400] >= 0.95
    with pytest.raises(DataError, match="only apply when building"):
        idx.set_knobs(m=8)


def test_ivf_needs_enough_training_vectors(data):
    x, ids, _ = data
    with pytest.raises(DataError, match="training on at least"):
        VectorIndex.build(x[:10], ids[:10], kind="ivf", nlist=64)


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def exact(data):
    x, ids, langs = data
    return VectorIndex.build(x, ids, list(langs), kind="exact", fingerprint="fp-a")


@pytest.mark.parametrize("queries, message", [
    (np.zeros((2, DIM + 1), np.float32), "dimension 33"),
    (np.zeros((2, DIM), np.int64), "dtype int64"),
    (np.zeros((2, 2, DIM), np.float32), "2-D"),
    (np.array([[np.nan] * DIM], np.float32), "row 0 holds NaN"),
    (np.vstack([np.ones(DIM), np.full(DIM, np.inf)]).astype(np.float32), "row 1 holds NaN or infinite"),
    (np.array([["a"] * DIM]), "dtype <U1"),
])
def test_bad_queries(exact, queries, message):
    with pytest.raises(DataError, match=message):
        exact.search(queries, 3)


def test_float64_and_1d_queries_accepted(exact, data):
    x, ids, _ = data
    a, _ = exact.search(x[:3].astype(np.float64), 4)
    b, _ = exact.search(x[0], 4)
    assert a.shape == (3, 4) and b.shape == (1, 4) and (a[0] == b[0]).all()


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "5"])
def test_bad_k(exact, data, k):
    with pytest.raises(DataError, match="k must be"):
        exact.search(data[0][:1], k)


def test_bad_exclusions(exact, data):
    x = data[0]
    with pytest.raises(DataError, match="2 per-query lists for 3 queries"):
        exact.search(x[:3], 2, exclude_ids=[[10], [11]])
    with pytest.raises(DataError, match="mixes ids and sequences"):
        exact.search(x[:3], 2, exclude_ids=[10, [11]])


def test_bad_build_input(data):
    x, ids, _ = data
    with pytest.raises(DataError, match="duplicate id 10"):
        VectorIndex.build(x[:3], [10, 11, 10])
    with pytest.raises(DataError, match="3 ids for 2 vectors"):
        VectorIndex.build(x[:2], [1, 2, 3])
    with pytest.raises(DataError, match="-1 is reserved"):
        VectorIndex.build(x[:2], [1, -1])
    with pytest.raises(DataError, match="row 1 holds NaN"):
        VectorIndex.build(np.array([[1.0, 0.0], [np.nan, 1.0]], np.float32), [1, 2])
    with pytest.raises(DataError, match="languages: 1 entries for 2"):
        VectorIndex.build(x[:2], [1, 2], ["en"])
    idx = VectorIndex.build(x[:2], [1, 2])
    with pytest.raises(DataError, match="dimension 5"):
        idx.add(np.zeros((1, 5), np.float32), [3])
    with pytest.raises(DataError, match=r"row 1: duplicate id 4 \(also at row 0\)"):
        idx.add(x[:2], [4, 4])
    assert len(idx) == 2  # a failed add changes nothing


def test_float16_storage_refuses_values_out_of_its_range(data):
    x, ids, _ = data
    idx = VectorIndex.build(x[:50], ids[:50], kind="hnsw", normalize=False)
    assert "SQfp16" in idx.factory
    wild = x[50:52].copy()
    wild[1, 3] = 1e6
    with pytest.raises(DataError, match=r"row 1 has a component beyond float16's range"):
        idx.add(wild, ids[50:52])
    assert len(idx) == 50 and idx.search(x[:1], 1)[0][0, 0] == ids[0]


def test_empty_index_returns_padding(data):
    idx = VectorIndex.build(np.empty((0, DIM), np.float32), [])
    got, scores = idx.search(data[0][:2], 3)
    assert len(idx) == 0 and got.shape == scores.shape == (2, 0)  # nothing to return: no columns
    idx.add(data[0][:1], [42], ["en"])
    assert idx.search(data[0][:1], 1)[0][0, 0] == 42


def test_zero_queries(exact):
    got, scores = exact.search(np.empty((0, DIM), np.float32), 3)
    assert got.shape == scores.shape == (0, 3)


def test_device_cuda_without_gpu_is_an_error(data):
    if "cpu" != gpu_backends.resolve_backend(None):
        pytest.skip("a GPU is present")
    with pytest.raises(XrecError, match="no CUDA GPU"):
        VectorIndex.build(data[0][:2], [1, 2], device="cuda")


# ---------------------------------------------------------------- saved artifacts
def test_load_rejects_other_encoder_and_dimension(exact, tmp_path):
    exact.save(tmp_path / "idx")
    with pytest.raises(ArtifactError, match="expected 'fp-b'"):
        VectorIndex.load(tmp_path / "idx", encoder_fingerprint="fp-b")
    with pytest.raises(ArtifactError, match="dimension 32, expected 384"):
        VectorIndex.load(tmp_path / "idx", expect_dim=384)


def test_load_rejects_truncated_and_corrupted(exact, tmp_path):
    exact.save(tmp_path / "idx")
    for name, damage in [("index.faiss", "truncate"), ("items.parquet", "flip"), ("manifest.json", "drop")]:
        copy = tmp_path / f"bad-{name}"
        shutil.copytree(tmp_path / "idx", copy)
        path = copy / name
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif damage == "flip":
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
        else:
            path.unlink()
        with pytest.raises(ArtifactError):
            VectorIndex.load(copy)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format_version 99"):
        VectorIndex.load(tmp_path / "idx")


def test_save_is_atomic_over_existing(exact, tmp_path, data):
    exact.save(tmp_path / "idx")
    smaller = VectorIndex.build(data[0][:3], [1, 2, 3], kind="exact")
    smaller.save(tmp_path / "idx")
    assert len(VectorIndex.load(tmp_path / "idx")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


# ---------------------------------------------------------------- GPU specifics
@pytest.mark.gpu
def test_faiss_gpu_large_k_falls_back(data):
    if "faiss-gpu" not in gpu_backends.available_backends():
        pytest.skip("FAISS without GPU support")
    x, ids, _ = data
    big = np.vstack([x, x[:700] + 0.05])  # 2,200 vectors: k above FAISS GPU's limit of 2048
    big_ids = np.arange(len(big), dtype=np.int64) + 10
    idx = VectorIndex.build(big, big_ids, kind="exact", device="faiss-gpu")
    got, scores = idx.search(big[:2], 2100)
    want, _ = VectorIndex.build(big, big_ids, kind="exact").search(big[:2], 2100)
    assert got.shape == (2, 2100) and (got[:, 0] == big_ids[:2]).all() and np.isfinite(scores).all()
    assert (got[:, :100] == want[:, :100]).mean() > 0.99


@pytest.mark.gpu
def test_torch_cuda_matches_cpu(data):
    if "torch-cuda" not in gpu_backends.available_backends():
        pytest.skip("torch without CUDA")
    x, ids, langs = data
    cpu = VectorIndex.build(x, ids, list(langs), kind="exact", device="cpu")
    cuda = VectorIndex.build(x, ids, list(langs), kind="exact", device="torch-cuda")
    for kw in ({}, {"languages": ["eu"]}, {"exclude_ids": [list(ids[:5])] * 4}):
        a, sa = cpu.search(x[:4], 10, **kw)
        b, sb = cuda.search(x[:4], 10, **kw)
        assert np.allclose(sa, sb, atol=1e-4) and (a[:, :5] == b[:, :5]).all()


def test_index_files_failing_their_checksum_never_reach_faiss(data, tmp_path):
    """A swapped index file that FAISS would read happily is refused by its checksum first."""
    import faiss

    x, ids, _ = data
    VectorIndex.build(x[:50], ids[:50], kind="exact").save(tmp_path / "a")
    VectorIndex.build(x[50:100], ids[:50], kind="exact").save(tmp_path / "b")
    swapped = tmp_path / "b" / "index.faiss"
    assert faiss.read_index(str(swapped)).ntotal == 50  # a valid FAISS file of the same size
    shutil.copy(swapped, tmp_path / "a" / "index.faiss")
    with pytest.raises(ArtifactError, match="index.faiss: checksum mismatch"):
        VectorIndex.load(tmp_path / "a")
    # a manifest that leaves the FAISS file out (so nothing checks it) is refused as well
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    del manifest["files"]["index.faiss"]
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="index.faiss not listed in the manifest"):
        VectorIndex.load(tmp_path / "b")


# ---------------------------------------------------------------- kernel and backend twins
def test_top_k_kernel_orders_pads_and_caps():
    from xrec.index.topk import top_k

    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [0.3, 0.2, 0.1, 0.0]], dtype=np.float32)
    cols, top = top_k(scores, 3)
    assert cols.tolist() == [[1, 3, 0], [0, 1, 2]] and np.allclose(top[1], [0.3, 0.2, 0.1])
    cols, top = top_k(scores, 10)  # k beyond n: every column, -inf last
    assert cols.shape == (2, 4) and cols[0, -1] == 2 and np.isneginf(top[0, -1])
    assert top_k(scores, 0)[0].shape == (2, 0)


def test_one_top_k_type_that_unpacks_like_a_tuple(data):
    """Index, neighbours and kernel return :class:`TopK`; ``ids, scores = ...`` and ``[0]`` work."""
    from xrec.index import TopK, search_by_language

    x, ids, langs = data
    index = VectorIndex.build(x, ids, list(langs), kind="exact", device="cpu")
    result = index.search(x[:4], 5)
    assert isinstance(result, TopK) and result.components == {}
    found, scores = result
    assert found is result.ids and scores is result.scores and result[0] is found and result[1] is scores
    by_lang = search_by_language(index, x[:4], langs[:4], 3)
    assert isinstance(by_lang, TopK) and by_lang.ids.shape == (4, 3)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_backend_twins_agree_on_the_cpu(data, kind):
    """Each backend class, run on the CPU (FAISS GPU cannot clone here, so it falls back; the
    torch twin runs its matmul + top-k on the CPU device), answers like :class:`FaissCpu`."""
    from xrec.index import backends

    class TorchOnCpu(backends.TorchCuda):
        torch_device = "cpu"

    x, ids, langs = data
    idx = VectorIndex.build(x, ids, list(langs), kind=kind, device="cpu")
    idx.remove(ids[:3])
    allowed = idx._slots.allowed(["eu"], None)
    alive = idx._slots.alive
    q = x[:6]
    for twin in (backends.FaissGpu, TorchOnCpu):
        other = twin(idx._index, idx.kind, idx.dim, idx.knobs)
        for mask in (None, allowed, alive):
            want_scores, want_slots = idx._backend.search(q, 10, mask, alive)
            got_scores, got_slots = other.search(q, 10, mask, alive)
            assert np.allclose(got_scores, want_scores, atol=1e-4)
            assert (got_slots[:, :5] == want_slots[:, :5]).mean() > 0.95
