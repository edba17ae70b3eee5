"""``xrec serve``: the real server on a loopback port, real encoder, index and ranker."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from xrec.catalogue.languages import display_name, normalise
from xrec.errors import DataError
from xrec.index import VectorIndex
from xrec.index.persist import INDEX_FILE
from xrec.serve import Guard, Limits, Service
from xrec.serve.server import ServerThread

from serve_helpers import request

pytestmark = pytest.mark.slow  # end to end: each test needs a fitted model, an encoded catalogue or a server


@pytest.fixture(scope="module")
def catalogue(serve_catalogue):
    return serve_catalogue


@pytest.fixture(scope="module")
def service(catalogue, encoder):
    svc = Service(catalogue["index"], items=catalogue["items"], ranker=catalogue["ranker"],
                  encoder=encoder, limits=Limits(max_k=50, max_text_chars=300, max_texts=8, max_ids=4))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def url(service):
    with ServerThread(service) as address:
        yield address


def test_health_names_model_index_and_versions(url, encoder, catalogue):
    status, body, _ = request(url, "GET", "/health")
    assert status == 200 and body["status"] == "ok"
    assert body["fingerprint"] == encoder.fingerprint
    assert body["index"]["count"] == len(catalogue["ids"])
    assert body["index"]["languages"] == len({normalise(lang) for lang in catalogue["langs"]})  # en = eng_Latn
    assert {"xrec", "starlette", "uvicorn", "faiss-cpu"} <= set(body["versions"])
    # no file paths or user ids without the token (the server here has none)
    assert "path" not in body["index"] and set(body["ranker"]) == {"users"}
    assert body["ranker"]["users"] > 0


def test_similar_text_finds_translations_in_other_languages(url, catalogue):
    sib = catalogue["sib"]
    query = sib.row(0, named=True)
    status, body, headers = request(url, "POST", "/similar", {
        "text": query["text"], "lang": query["lang"], "other_languages": True, "k": 5})
    assert status == 200
    hits = body["queries"][0]["neighbours"]
    assert len(hits) == 5 and all(h["lang"] != normalise(query["lang"]) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    best = sib.filter(sib["item_id"] == hits[0]["id"]).row(0, named=True)
    assert best["index_id"] == query["index_id"]  # the translation of the same sentence
    assert hits[0]["text"] == best["text"]
    timing = headers["server-timing"]
    assert "encode;dur=" in timing and "search;dur=" in timing and "app;dur=" in timing


def test_similar_ids_with_language_filters(url, catalogue):
    sib = catalogue["sib"]
    langs = sorted(set(sib["lang"]))
    item = sib["item_id"][0]
    status, body, _ = request(url, "POST", "/similar", {"ids": [item], "k": 7, "languages": langs[1:3]})
    assert status == 200
    hits = body["queries"][0]["neighbours"]
    assert len(hits) == 7 and {h["lang"] for h in hits} <= {normalise(lang) for lang in langs[1:3]}
    assert body["unknown_language_left_out"] == 0
    status, body, _ = request(url, "POST", "/similar", {"ids": [item], "k": 50,
                                                        "exclude_languages": ["eng_Latn"]})
    hits = body["queries"][0]["neighbours"]
    assert item not in [h["id"] for h in hits] and "en" not in {h["lang"] for h in hits}


def test_languages_by_any_spelling_and_unknown_codes(url, catalogue):
    """The Flores codes the catalogue was built with, their BCP 47 codes and English names all name
    one language; a code no registry knows is a 422 naming the field."""
    lang = normalise(catalogue["sib"]["lang"][0])  # e.g. arb_Arab -> ar
    for spelling in (catalogue["sib"]["lang"][0], lang, display_name(lang)):
        status, body, _ = request(url, "POST", "/similar", {"text": "Wahlen", "k": 3, "languages": [spelling]})
        assert status == 200 and {h["lang"] for h in body["queries"][0]["neighbours"]} == {lang}
    status, body, _ = request(url, "POST", "/similar", {"text": "Wahlen", "languages": ["de", "xx-Klingon"]})
    assert status == 422 and body["field"] == "languages[1]"
    assert "'xx-Klingon' is not a language code" in body["error"]
    status, body, _ = request(url, "POST", "/similar", {"text": "Wahlen", "lang": "xx-Klingon",
                                                        "other_languages": True})
    assert status == 422 and body["field"] == "lang"


def test_embed_equals_the_library(url, encoder):
    texts = ["Der Hund schläft.", "The dog sleeps.", ""]
    status, body, _ = request(url, "POST", "/embed", {"texts": texts, "kind": "passage"})
    assert status == 200 and body["fingerprint"] == encoder.fingerprint and body["dim"] == encoder.dim
    got = np.array(body["vectors"], dtype=np.float32)
    assert np.allclose(got, encoder.encode(texts, "passage"), atol=1e-5)


def test_recommend_for_a_user_with_explanations(url, catalogue):
    ratings = catalogue["ratings"]
    user = int(ratings["user_id"][0])
    status, body, _ = request(url, "POST", "/recommend", {"user_id": user, "k": 8})
    assert status == 200 and len(body["items"]) == 8
    seen = set(ratings.filter(ratings["user_id"] == user)["item_id"].to_list())
    assert not seen & {it["id"] for it in body["items"]}
    first = body["items"][0]
    components = {"cf_score", "content_score", "lexical_score", "prior_score", "popularity"}
    assert {"score", "text", "lang", *components} <= set(first)
    assert first["lang"] == "en" and first["text"]


def test_recommend_for_an_adhoc_history(url, catalogue):
    sib = catalogue["sib"]
    langs = sorted(set(sib["lang"]))
    history = sib.filter(sib["lang"] == langs[0])["item_id"].head(3).to_list()
    status, body, _ = request(url, "POST", "/recommend", {"history": history, "k": 6,
                                                          "exclude_languages": [langs[0]]})
    assert status == 200 and len(body["items"]) == 6
    assert not set(history) & {it["id"] for it in body["items"]}
    assert normalise(langs[0]) not in {it["lang"] for it in body["items"]}
    status, body, _ = request(url, "POST", "/recommend", {"history": history, "k": 4,
                                                          "languages": [langs[1]]})
    assert {it["lang"] for it in body["items"]} == {normalise(langs[1])}


@pytest.mark.parametrize("path,body,status,field", [
    ("/similar", b"{not json", 400, None),
    ("/similar", b"[1, 2]", 400, None),
    ("/similar", b"", 400, None),
    ("/similar", b"\xff\xfe", 400, None),
    ("/similar", {"k": 3}, 422, "text"),
    ("/similar", {"text": "x", "ids": [1]}, 422, "ids"),
    ("/similar", {"text": "x", "colour": "red"}, 422, "colour"),
    ("/similar", {"text": "x" * 301}, 422, "text"),
    ("/similar", {"text": 5}, 422, "text"),
    ("/similar", {"text": "x", "k": 0}, 422, "k"),
    ("/similar", {"text": "x", "k": 51}, 422, "k"),
    ("/similar", {"text": "x", "k": "5"}, 422, "k"),
    ("/similar", {"text": "x", "k": True}, 422, "k"),
    ("/similar", {"ids": [987654321]}, 404, "ids[0]"),
    ("/similar", {"ids": ["abc"]}, 422, "ids[0]"),
    ("/similar", {"ids": []}, 422, "ids"),
    ("/similar", {"ids": [1, 2, 3, 4, 5]}, 422, "ids"),
    ("/similar", {"text": "x", "languages": ["no_such_lang"]}, 422, "languages[0]"),
    ("/similar", {"text": "x", "exclude_languages": "films"}, 422, "exclude_languages"),
    ("/similar", {"text": "x", "other_languages": True}, 422, "lang"),
    ("/recommend", {"user_id": 99999999}, 404, "user_id"),
    ("/recommend", {"user_id": [1]}, 422, "user_id"),
    ("/recommend", {"history": [987654321]}, 404, "history[0]"),
    ("/recommend", {}, 422, "user_id"),
    ("/embed", {"texts": ["a"] * 9}, 422, "texts"),
    ("/embed", {"texts": ["a", 3]}, 422, "texts[1]"),
    ("/embed", {"texts": ["a"], "kind": "document"}, 422, "kind"),
    ("/embed", {}, 422, "texts"),
])
def test_bad_input_gets_a_clear_error(url, path, body, status, field):
    raw = body if isinstance(body, bytes) else None
    got, answer, _ = request(url, "POST", path, None if raw is not None else body, raw=raw)
    assert got == status, answer
    assert isinstance(answer, dict) and answer["error"]
    assert answer.get("field") == field
    if field is not None:
        assert field.split("[")[0] in answer["error"]


def test_oversized_body_unknown_route_and_wrong_method(url):
    # refused on its Content-Length before any of it is read; the body is never sent, so the
    # refusal cannot race a client still writing (a broken pipe, or a reset losing the answer)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /similar HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (host.encode(), port.encode(), (1 << 20) + 1))
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        status, answer = reply.status, json.loads(reply.read())
    assert status == 413 and "limit" in answer["error"]
    status, answer, _ = request(url, "GET", "/nowhere")
    assert status == 404 and answer["error"]
    status, answer, _ = request(url, "GET", "/similar")
    assert status == 405


def test_client_that_disconnects_mid_request_leaves_the_server_up(url, catalogue):
    host, port = url.removeprefix("http://").split(":")
    body = b'{"text": "hallo", "k": 5}'
    head = b"POST /similar HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for payload in (head + b"Content-Length: 100\r\n\r\n" + body[:8],  # body promised, cut short
                    head + b"Content-Length: %d\r\n\r\n" % len(body) + body):  # answer never read
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(payload)
    status, body, _ = request(url, "POST", "/similar", {"text": "hallo", "k": 2})
    assert status == 200 and len(body["queries"][0]["neighbours"]) == 2
    assert request(url, "GET", "/health")[0] == 200


def test_microbatching_shares_encoder_calls(catalogue, encoder):
    svc = Service(catalogue["index"], encoder=encoder, max_batch=32, max_wait_ms=50)
    texts = catalogue["sib"]["text"].head(12).to_list()
    try:
        with ServerThread(svc) as address:
            before = svc.batcher.batches
            with ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(lambda t: request(address, "POST", "/similar", {"text": t, "k": 3}), texts))
            assert all(status == 200 for status, _, _ in answers)
            batches = svc.batcher.batches - before
            sizes = [int(h["server-timing"].split('batch;desc="')[1].split('"')[0]) for _, _, h in answers]
            assert batches < len(texts) and max(sizes) > 1
            # each answer is that of its own text, whatever batch it was in
            for text, (_, body, _) in zip(texts, answers):
                assert body["queries"][0]["text"] == text
                alone = svc.call("similar", {"text": text, "k": 3})[0]
                assert [h["id"] for h in body["queries"][0]["neighbours"]] == \
                    [h["id"] for h in alone["queries"][0]["neighbours"]]
    finally:
        svc.close()


def test_workers_share_the_queue_each_with_its_own_encoder(catalogue, encoder):
    svc = Service(catalogue["index"], model="bundled", precision="fp32", threads=1, workers=2, max_batch=1)
    texts = catalogue["sib"]["text"].head(24).to_list()
    try:
        with ServerThread(svc) as address:
            health = request(address, "GET", "/health")[1]
            assert health["queue"]["workers"] == 2 and health["fingerprint"] == encoder.fingerprint
            with ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(lambda t: request(address, "POST", "/similar", {"text": t, "k": 3}), texts))
            assert all(status == 200 for status, _, _ in answers)
            assert all(n > 0 for n in svc.batcher.worker_batches), svc.batcher.worker_batches
            index = VectorIndex.load(catalogue["index"])
            for text, (_, body, _) in zip(texts, answers):
                assert body["queries"][0]["text"] == text
                want = index.search(encoder.encode([text], "query"), 3).ids[0]
                assert [h["id"] for h in body["queries"][0]["neighbours"]] == list(want)
    finally:
        svc.close()
    with pytest.raises(DataError, match="workers"):
        Service(catalogue["index"], encoder=encoder, workers=2)
    with pytest.raises(DataError, match="workers"):
        Service(catalogue["index"], encoder=encoder, workers=0)


class GatedEncoder:
    """The real encoder behind a gate: ``encode`` (the seam the batcher's worker calls) waits until
    the test opens the gate, so a test decides when the worker is busy instead of racing it."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, texts, kind="passage", **kwargs):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self._encoder.encode(texts, kind=kind, **kwargs)


def test_request_beyond_the_queue_gets_503_and_the_server_stays_up(catalogue, encoder):
    gated = GatedEncoder(encoder)
    svc = Service(catalogue["index"], encoder=gated, max_batch=1, max_wait_ms=0, max_queue=3)
    texts = catalogue["sib"]["text"].head(5).to_list()
    gated.gate.clear()
    gated.entered.clear()
    try:
        with ServerThread(svc) as address, ThreadPoolExecutor(4) as pool:
            first = pool.submit(request, address, "POST", "/similar", {"text": texts[0]})
            assert gated.entered.wait(60)  # the worker holds the first text inside encode
            waiting = [pool.submit(request, address, "POST", "/similar", {"text": t}) for t in texts[1:4]]
            deadline = time.monotonic() + 60
            while svc.batcher.queued < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert svc.batcher.queued == 3  # the queue is full
            status, body, headers = request(address, "POST", "/similar", {"text": texts[4]})
            assert status == 503 and "busy" in body["error"] and headers["retry-after"] == "1"
            assert request(address, "GET", "/health")[0] == 200
            gated.gate.set()
            assert [f.result()[0] for f in [first, *waiting]] == [200] * 4  # the queued ones are served
            assert request(address, "POST", "/similar", {"text": texts[4]})[0] == 200
    finally:
        gated.gate.set()
        svc.close()


def test_reload_swaps_the_index_atomically(tmp_path, catalogue, encoder):
    from xrec.index import VectorIndex

    vectors, ids, langs = catalogue["vectors"], catalogue["ids"], catalogue["langs"]
    path = tmp_path / "index"
    VectorIndex.build(vectors[:100], ids[:100], langs[:100], kind="exact",
                      fingerprint=encoder.fingerprint).save(path)
    svc = Service(path, encoder=encoder)
    token = {"Authorization": "Bearer s3cret"}
    try:
        with ServerThread(svc, guard=Guard(token="s3cret")) as address:
            # the index directory replaced while serving: answers still come from the loaded one
            VectorIndex.build(vectors, ids, langs, kind="exact", fingerprint=encoder.fingerprint).save(path)
            assert request(address, "GET", "/health")[1]["index"]["count"] == 100
            stop, counts, failures = threading.Event(), set(), []

            def hammer() -> None:
                while not stop.is_set():
                    status, body, _ = request(address, "POST", "/similar", {"ids": [ids[0]], "k": 1000 // 20})
                    if status != 200:
                        failures.append(body)
                    counts.add(len(body["queries"][0]["neighbours"]))

            worker = threading.Thread(target=hammer)
            worker.start()
            status, info, _ = request(address, "POST", "/reload", headers=token)
            assert status == 200 and info["index"]["count"] == len(ids)
            # a corrupted index on disk: the reload is refused, the loaded index keeps serving
            faiss_file = path / INDEX_FILE
            faiss_file.write_bytes(faiss_file.read_bytes()[:100])
            status, answer, _ = request(address, "POST", "/reload", headers=token)
            assert status == 409 and faiss_file.name in answer["error"] and "previous" in answer["error"]
            stop.set()
            worker.join()
            assert not failures and counts <= {50}
            assert request(address, "GET", "/health")[1]["index"]["count"] == len(ids)
    finally:
        svc.close()


def test_cli_serves_reloads_on_sighup_and_stops_on_sigterm(tmp_path, catalogue, encoder):
    index = tmp_path / "index"
    shutil.copytree(catalogue["index"], index)
    cmd = [sys.executable, "-m", "xrec.cli.main", "serve", "--index", str(index), "--port", "0",
           "--precision", "fp32", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        address = line.split("listening on ")[1].strip()
        status, health, _ = request(address, "GET", "/health")
        assert status == 200 and health["index"]["count"] == len(catalogue["ids"])
        from xrec.index import VectorIndex

        VectorIndex.build(catalogue["vectors"][:10], catalogue["ids"][:10], catalogue["langs"][:10],
                          kind="exact", fingerprint=encoder.fingerprint).save(index)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while request(address, "GET", "/health")[1]["index"]["count"] != 10:
            assert time.monotonic() < deadline, "SIGHUP did not reload the index"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # graceful stop; uvicorn then re-raises the signal
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_similar_text_gets_a_topic_with_score_and_support(catalogue, topic_model, encoder):
    from xrec.topics.classifier import TopicClassifier

    model = TopicClassifier.load(topic_model)
    svc = Service(catalogue["index"], items=catalogue["items"], topics=topic_model, encoder=encoder)
    try:
        query = catalogue["sib"].row(0, named=True)
        body, _ = svc.submit_similar({"text": query["text"], "lang": query["lang"], "k": 2}).result(timeout=60)
    finally:
        svc.close()
    topic = body["queries"][0]["topic"]
    assert topic["label"] in model.labels and 0 < topic["score"] <= 1 and 0 <= topic["support"] <= 1
