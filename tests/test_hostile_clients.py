"""``xrec serve`` against hostile clients, on loopback: every resource a client controls is bounded.

Each test is bounded in connections, bytes and seconds, and stops by itself. The server is the
real one (uvicorn, httptools) over a real index, encoder and ranker.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from xrec.serve import Guard, Service
from xrec.serve.server import ServerThread

from serve_helpers import request

pytestmark = pytest.mark.slow  # end to end: each test needs a fitted model, an encoded catalogue or a server

TOKEN = "t0ken-for-tests"


@pytest.fixture(scope="module")
def catalogue(serve_catalogue):
    return serve_catalogue


@pytest.fixture(scope="module")
def service(catalogue, encoder):
    svc = Service(catalogue["index"], items=catalogue["items"], ranker=catalogue["ranker"], encoder=encoder)
    yield svc
    svc.close()


GUARD = Guard(token=TOKEN, header_timeout_s=0.5, body_timeout_s=1.0, max_connections=64)


@pytest.fixture(scope="module")
def server(service):
    thread = ServerThread(service, guard=GUARD)
    with thread as url:
        yield url, thread


def _connect(url: str, timeout: float = 5.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def _status(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and raw bytes of the response on ``sock`` (read until closed or 5 s)."""
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data and b"connection: close" not in data.lower():
            head, _, body = data.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    return (int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else 0), data


def test_chunked_body_is_refused_at_the_limit_not_after_it(server):
    url, _ = server
    sock = _connect(url, timeout=2.0)
    sock.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" * 65536
    total, sent = 64 << 20, 0  # 64 MiB offered; the limit is 1 MiB
    try:
        while sent < total:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading
    status, data = _status(sock)
    sock.close()
    assert status == 413, data[:200]
    assert sent < total // 2, f"the server read {sent} bytes of an oversized body"


def test_declared_oversized_body_is_refused_before_it_is_sent(server):
    url, _ = server
    status, body, headers = request(url, "POST", "/embed", raw=b"{}", headers={"Content-Length": str(800 << 20)})
    assert status == 413 and "limit" in body["error"]


@pytest.mark.parametrize("raw", [
    b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # far deeper than any parser's recursion
    b'{"texts": ' + b"[" * 40 + b"]" * 40 + b"}",  # within recursion limits, beyond the depth limit
])
def test_deeply_nested_json_is_a_400_not_a_500(server, raw):
    status, body, _ = request(server[0], "POST", "/embed", raw=raw)
    assert status == 400 and "nested" in body["error"]


@pytest.mark.parametrize(("path", "raw", "field"), [
    ("/similar", b'{"text": "caf\\ud800e"}', "text"),
    ("/embed", b'{"texts": ["ok", "\\udfff"]}', "texts[1]"),
    ("/similar", b'{"ids": ["\\ud83d"]}', "ids[0]"),
    ("/recommend", b'{"\\ud800": 1}', "\\ud800"),
])
def test_lone_surrogates_are_a_400_naming_the_field(server, path, raw, field):
    status, body, _ = request(server[0], "POST", path, raw=raw)
    assert status == 400 and "surrogate" in body["error"] and body["field"] == field


def test_odd_bodies_never_get_a_500(server, catalogue):
    film = catalogue["films"]["item_id"][0]
    bodies = [{"ids": [1.0]}, {"ids": [float("inf")]}, {"ids": [" 5 "]}, {"ids": [True]}, {"ids": [[1]]},
              {"ids": [{}]}, {"ids": ["2.5"]}, {"k": "10", "text": "x"}, {"k": 10**30, "text": "x"},
              {"text": ["x"]}, {"languages": "en", "text": "x"}, {"user_id": 1.5}, {"user_id": None},
              {"user_id": [1]}, {"history": [film, 2.5]}, {"texts": [None]}, {"texts": "abc"},
              {"kind": ["query"], "texts": ["a"]}, {"text": "x", "lang": 5}]
    statuses = []
    for body in bodies:
        for path in ("/similar", "/recommend", "/embed"):
            raw = json.dumps(body, allow_nan=True).encode()
            statuses.append((path, body, request(server[0], "POST", path, raw=raw)[0]))
    assert all(400 <= status < 500 for _, _, status in statuses), [s for s in statuses if s[2] >= 500]


def _wrong_bodies(film: int, user: int) -> list[tuple[str, object]]:
    """``(path, body)`` pairs a client may send by mistake: wrong types in every field, k out of
    range, ids no 64-bit integer holds, unknown fields, lists too long, bodies that are not objects."""
    huge = 10**30
    cases: list[tuple[str, object]] = [(path, body) for path in ("/similar", "/recommend", "/embed")
                                       for body in ([], ["text"], "text", 7, None, True, {}, {"": 1})]
    for k in (-1, 0, 10**6, huge, 2.5, "3", True, None, [3]):
        cases += [("/similar", {"text": "x", "k": k}), ("/similar", {"ids": [film], "k": k}),
                  ("/recommend", {"user_id": user, "k": k}), ("/recommend", {"history": [film], "k": k})]
    for ids in ([huge], [-huge], [str(huge)], [film, huge], [film] * 1000, [], "1", {"1": 1}, [None], 5):
        cases += [("/similar", {"ids": ids}), ("/recommend", {"history": ids})]
    for who in (huge, -huge, str(huge), "x", [user], {"id": user}, 2.0, ""):
        cases.append(("/recommend", {"user_id": who}))
    for field in ("languages", "exclude_languages"):
        for value in ("en", ["en", 5], [["en"]], [], [""], ["no-such-language-code"], ["x" * 100_000],
                      {"en": 1}, [None]):
            cases += [("/similar", {"text": "x", field: value}), ("/recommend", {"user_id": user, field: value})]
    cases += [("/similar", {"text": text}) for text in (5, ["x"], {"t": "x"}, "x" * 100_000)]
    cases += [("/similar", {"text": "x", "lang": lang}) for lang in (5, ["en"], "", "no-such-language-code")]
    cases += [("/similar", {"text": "x", "other_languages": v}) for v in ("yes", 1, None, [True])]
    cases += [("/similar", {"text": "x", "other_languages": True}),  # without lang
              ("/similar", {"ids": [film], "lang": "en"}), ("/similar", {"text": "x", "ids": [film]}),
              ("/recommend", {"user_id": user, "history": [film]}), ("/similar", {"text": "x", "extra": None}),
              ("/recommend", {"user_id": user, "text": "x"})]
    for texts in ([], "abc", [5], [["a"]], ["a"] * 1000, ["x" * 100_000], None, {"a": "b"}):
        cases.append(("/embed", {"texts": texts}))
    cases += [("/embed", {"texts": ["a"], "kind": kind})
              for kind in ("document", None, ["query"] * 10_000, {"k": 1}, 1)]
    cases += [("/embed", {"texts": ["a"], "k": 3})]
    return cases


def test_wrong_types_and_ranges_are_a_4xx_with_a_short_message_naming_the_field(server, catalogue):
    """Every mistaken body is refused (4xx) with a short JSON message; one naming a field says which."""
    url = server[0]
    film = catalogue["films"]["item_id"][0]
    user = catalogue["ratings"]["user_id"][0]
    refused = []
    for path, body in _wrong_bodies(film, user):
        status, answer, _ = request(url, "POST", path, raw=json.dumps(body).encode())
        refused.append((path, body, status, answer))
    wrong = [(p, str(b)[:80], s, a) for p, b, s, a in refused if not 400 <= s < 500]
    assert not wrong, wrong
    for path, body, status, answer in refused:
        assert isinstance(answer, dict) and answer["error"] and len(answer["error"]) < 400, (path, str(body)[:80],
                                                                                              answer)
        if status == 422 and isinstance(body, dict) and len(body) == 1 and "" not in body:
            assert answer.get("field", "").split("[")[0] in (*body, "k", "texts"), (path, body, answer)
    assert request(url, "POST", "/similar", {"text": "x", "k": 3})[0] == 200  # still serving


def test_ids_follow_one_rule_in_requests(server, catalogue):
    url = server[0]
    film = catalogue["films"]["item_id"][0]
    assert request(url, "POST", "/similar", {"ids": [film], "k": 2})[0] == 200
    assert request(url, "POST", "/similar", {"ids": [str(film)], "k": 2})[0] == 200  # "28" names item 28
    for bad in (float(film), f" {film}", f"{film}.0"):
        status, body, _ = request(url, "POST", "/similar", {"ids": [bad], "k": 2})
        assert status == 422 and body["field"] == "ids[0]", body


def test_slow_headers_are_closed_at_the_deadline(server):
    url, thread = server
    socks = [_connect(url) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"POST /similar HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        # a normal request meanwhile is answered
        assert request(url, "GET", "/health")[0] == 200
        answers = [_status(sock) for sock in socks]  # each waits at most 5 s; the deadline is 0.5 s
    finally:
        for sock in socks:
            sock.close()
    assert all(status == 408 for status, _ in answers), [a[1][:80] for a in answers]


def test_idle_connection_without_a_request_is_closed(server):
    sock = _connect(server[0])
    started = time.monotonic()
    status, _ = _status(sock)
    sock.close()
    assert status == 408 and time.monotonic() - started < 4


def test_oversized_headers_get_431(server):
    sock = _connect(server[0])
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * (128 * 1024))
    status, _ = _status(sock)
    sock.close()
    assert status == 431


def test_slow_body_gets_408(server):
    sock = _connect(server[0])
    sock.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"texts\": ")  # 90 bytes never come
    status, _ = _status(sock)
    sock.close()
    assert status == 408


def test_connections_beyond_the_cap_get_503_with_retry_after(service):
    guard = Guard(max_connections=4, header_timeout_s=10)
    thread = ServerThread(service, guard=guard)
    with thread as url:
        idle = [_connect(url) for _ in range(4)]
        try:
            deadline = time.monotonic() + 5
            while len(thread.server.server_state.connections) < 4:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            status, body, headers = request(url, "GET", "/health")
            assert status == 503 and headers.get("retry-after") == "1" and "busy" in body["error"]
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while len(thread.server.server_state.connections) >= 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert request(url, "GET", "/health")[0] == 200


def test_aborted_upload_logs_no_traceback(server, caplog):
    with caplog.at_level(logging.DEBUG):
        sock = _connect(server[0])
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n{\"texts\"")
        time.sleep(0.1)
        sock.close()
        time.sleep(0.3)  # the server notices the disconnect
        assert request(server[0], "GET", "/health")[0] == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_reload_needs_the_token_and_refuses_cross_origin_and_foreign_host(server):
    url = server[0]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # a web page's no-preflight POST: no token, text/plain, foreign Origin
    status, body, _ = request(url, "POST", "/reload", raw=b"x",
                              headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert status == 403
    assert request(url, "POST", "/reload", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(url, "POST", "/reload")[0] == 401
    status, _, _ = request(url, "POST", "/reload", headers={**auth, "Origin": "http://evil.example"})
    assert status == 403
    # DNS rebinding: a foreign Host is refused on every route
    for method, path in (("POST", "/reload"), ("GET", "/health"), ("POST", "/similar")):
        status, body, _ = request(url, method, path, {"text": "x"}, headers={**auth, "Host": "evil.example"})
        assert status == 421, (path, body)
    host = url.removeprefix("http://")
    status, info, _ = request(url, "POST", "/reload", headers={**auth, "Origin": f"http://{host}"})
    assert status == 200 and info["index"]["count"] > 0


def test_reload_is_off_without_a_token(service):
    with ServerThread(service, guard=Guard()) as url:
        status, body, _ = request(url, "POST", "/reload", headers={"Authorization": "Bearer anything"})
    assert status == 403 and "XREC_SERVE_TOKEN" in body["error"] and "SIGHUP" in body["error"]


def test_health_shows_paths_and_user_ids_only_with_the_token(server, catalogue):
    url = server[0]
    status, public, _ = request(url, "GET", "/health")
    text = json.dumps(public)
    assert status == 200 and public["index"]["count"] == len(catalogue["ids"])
    assert str(catalogue["index"]) not in text and str(catalogue["ranker"]) not in text
    assert "example_users" not in public["ranker"] and public["ranker"]["users"] > 0
    status, full, _ = request(url, "GET", "/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert full["index"]["path"] == str(catalogue["index"]) and full["ranker"]["example_users"]
