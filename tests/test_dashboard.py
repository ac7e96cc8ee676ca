"""The dashboard's page and assets as served (no browser: tests/test_dashboard_browser.py has one)."""

from __future__ import annotations

import re

from api.dashboard import DASHBOARD_CSP


def fetch(client, url: str) -> tuple[int, str]:
    """Status and text of an answer, closed (a static file's answer holds the file open)."""
    with client.get(url) as answer:
        return answer.status_code, answer.get_data(as_text=True)


def test_the_root_serves_the_dashboard_not_the_index_of_doc_pages(client):
    for url in ("/", "/dashboard"):
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == "text/html"
        assert "<title>Restriction forecasts: dashboard</title>" in r.text
    assert client.get("/docs").headers["Location"] == "/swagger"  # the API pages stay


def test_the_page_runs_only_its_own_files(client):
    r = client.get("/")
    csp = r.headers["Content-Security-Policy"]
    assert csp == DASHBOARD_CSP
    assert "script-src 'self';" in csp and "unsafe" not in csp and "http" not in csp
    assert "frame-ancestors 'none'" in csp and r.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in r.text and " style=" not in r.text  # nothing inline to allow
    assets = re.findall(r'(?:src|href)="(/static/dashboard/[^"]+)"', r.text)
    assert {a.rsplit("/", 1)[1] for a in assets} == {"dashboard.js", "dashboard.css", "favicon.svg"}
    for asset in assets:
        assert fetch(client, asset)[0] == 200, asset


def test_the_api_keeps_its_closed_policy(client):
    assert client.get("/v1/vocab").headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_page_is_not_an_api_operation(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p == "/" or "dashboard" in p or "static" in p]


def test_with_closed_reads_the_page_loads_and_the_api_asks_for_a_token(api_settings):
    import dataclasses

    from api import create_app

    settings = dataclasses.replace(api_settings, open_reads=False)
    app = create_app({"SETTINGS": settings})
    client = app.test_client()
    assert client.get("/").status_code == 200  # the page itself holds no data
    assert fetch(client, "/static/dashboard/dashboard.js")[0] == 200
    assert client.get("/v1/vocab").status_code == 401  # what makes the page ask for a token
    app.extensions["forecasting"].database.dispose()


def test_the_script_reads_only_the_documented_api(client):
    """One code path for the numbers: every route the script calls is in the API document."""
    script = fetch(client, "/static/dashboard/dashboard.js")[1]
    called = set(re.findall(r'"(/v1/[a-z/]+)"', script)) | set(re.findall(r"`(/v1/[^`]+)`", script))
    normal = {re.sub(r"/current\b", "/{version}", u).replace("${doc.version}", "{version}")
              .replace("${name}", "{name}") for u in called}
    paths = set(client.get("/openapi.json").get_json()["paths"])
    assert {"/v1/forecasts/grid", "/v1/forecasts/compare", "/v1/models/{version}/plots/{name}.png",
            "/v1/models/{version}/diagnostics", "/v1/refits"} <= normal
    optional = {"/v1/forecasts/horizon"}  # asked only when the server's document lists it
    assert normal - optional <= paths, f"not in the API document: {sorted(normal - optional - paths)}"
