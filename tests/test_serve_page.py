"""The page at ``/`` of ``xrec serve`` in a real headless Chromium (Debian's), driven by Playwright.

Skipped where no Chromium is installed (``.ci/run`` installs Debian's ``chromium`` where it can)
or the ``playwright`` package is missing; Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil

import pytest
from xrec.serve import Service
from xrec.serve.server import ServerThread

CHROMIUM = os.environ.get("XREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")]
# the flags Chromium needs as root on a machine without network or display
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def page_url(serve_catalogue, encoder):
    catalogue = serve_catalogue
    service = Service(catalogue["index"], items=catalogue["items"], ranker=catalogue["ranker"],
                      encoder=encoder)
    try:
        with ServerThread(service) as url:
            yield url, catalogue
    finally:
        service.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def test_page_shows_neighbours_grouped_by_language_and_recommendations(page_url, browser, tmp_path):
    url, catalogue = page_url
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('status').textContent.includes('items')")
    assert f"{len(catalogue['ids'])} items" in page.text_content("#status")

    sib = catalogue["sib"]
    query = sib.row(0, named=True)
    page.fill("#text", query["text"])
    page.fill("#lang", query["lang"])
    page.check("#other")
    page.fill("#k", "6")
    page.click("#search")
    page.wait_for_selector("#similar-results .group")
    groups = page.eval_on_selector_all("#similar-results .group", "els => els.map(e => e.dataset.lang)")
    assert groups and query["lang"] not in groups
    assert len(page.query_selector_all("#similar-results tr.hit")) == 6
    translations = sib.filter(sib["index_id"] == query["index_id"])["text"].to_list()
    assert page.text_content("#similar-results tr.hit td:nth-child(2)") in translations
    score = float(page.text_content("#similar-results tr.hit td.score"))
    assert 0.5 < score <= 1.0

    # a bad request shows the server's error, naming the field
    page.fill("#lang", "")
    page.click("#search")
    page.wait_for_selector("#similar-results .error")
    assert "lang" in page.text_content("#similar-results .error")

    assert page.is_visible("#users")
    user = str(int(catalogue["ratings"]["user_id"][0]))
    page.fill("#user", user)
    page.click("#recommend")
    page.wait_for_selector("#recommendations tr.rec")
    header = page.eval_on_selector_all("#recommendations th", "els => els.map(e => e.textContent)")
    assert {"score", "cf_score", "content_score", "lexical_score", "prior_score", "popularity"} <= set(header)
    assert len(page.query_selector_all("#recommendations tr.rec")) == 10
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert not errors
