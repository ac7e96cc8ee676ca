"""The dashboard in a real browser: Playwright driving Debian's chromium against a live server.

A server (the app in a thread, on a free port) answers from a copy of the session's instance
with its fitted model current. The tests change the scenario and see the map change, open a
cell, compare two scenarios, read the model's health, and run axe-core on each view; they save
screenshots in test-artifacts/dashboard/ (gitignored). Skipped, saying why, where chromium or
Playwright is missing (`make test` installs chromium when apt-get can).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import threading
import urllib.request
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from fixtures_api import copy_instance

from api import create_app
from forecasting.evaluation import reports
from forecasting.registry import Registry

CHROMIUM = Path(os.environ.get("FORECAST_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
# a real 1x1 PNG, standing in for a rendered plot (rendering one costs seconds)
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
                         "hgGAWjR9awAAAABJRU5ErkJggg==")
# A stored backtest report, in the shape of forecasting.evaluation.backtest.summarise_backtest
# (computing one costs minutes), with two of its scores.
BACKTEST = {
    "model": "hierarchical", "baselines": ["climatology"], "scores": ["brier", "log"],
    "n_episodes": 120, "n_folds": 3, "observed_any": 0.2,
    "forecasters": {"hierarchical": {"scores": {"brier": 0.123, "log": 0.456}},
                    "climatology": {"scores": {"brier": 0.135, "log": 0.501}}},
    "comparisons": {"climatology": {"brier": {"mean": -0.012, "lo": -0.03, "hi": 0.005, "ci": 0.9},
                                    "log": {"mean": -0.045, "lo": -0.09, "hi": 0.002, "ci": 0.9}}},
    "folds": [], "orientation": "losses: lower is better; differences are model - baseline",
}
TIMEOUT = 60_000  # ms: the grid is computed per request on a loaded 2-core machine

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e '.[test]')")
if not CHROMIUM.exists():
    pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install chromium` (make test does it as "
                "root), or set FORECAST_TEST_CHROMIUM", allow_module_level=True)


class LiveServer:
    """The app served by werkzeug in a thread, on a free port."""

    def __init__(self, settings):
        from werkzeug.serving import make_server

        self.settings = settings
        self.app = create_app({"SETTINGS": settings})
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path: str, token: str | None = None, method: str = "GET") -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers,
                                         method=method)
        with urllib.request.urlopen(request) as answer:
            return json.load(answer)

    def stop(self):
        self.server.shutdown()
        self.thread.join(10)
        self.app.extensions["forecasting"].database.dispose()


def _instance(api_template, folder):
    settings = copy_instance(api_template, folder)
    version = Registry(settings.registry_path).promote(api_template[2]["served"])
    plot = settings.instance_path / "plots" / version.version / "forest.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(PIXEL)
    return settings


@pytest.fixture(scope="module")
def live(api_template, tmp_path_factory):
    server = LiveServer(_instance(api_template, tmp_path_factory.mktemp("dashboard") / "instance"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def shot(page, name: str, full_page: bool = True):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page).response
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


def cells(page) -> dict[tuple[str, str], str]:
    """(partner, type) -> the value the map shows."""
    found = page.eval_on_selector_all(
        ".cell-button", "els => els.map(e => [e.dataset.partner, e.dataset.type, "
                        "e.querySelector('.value').firstChild.textContent])")
    return {(p, t): v for p, t, v in found}


def pct(x: float) -> str:
    """The page's rounding of a probability (dashboard.js pct): JavaScript's toFixed rounds
    the double's exact value half up (12.5 -> 13), Python's format half to even."""
    v = x * 100
    if x == 0:
        return "0%"
    digits = Decimal("0.1") if abs(v) < 10 else Decimal("1")
    return f"{Decimal(v).quantize(digits, rounding=ROUND_HALF_UP)}%"


def signed_pct(x: float) -> str:
    return ("+" if x > 0 else "\u2212" if x < 0 else "") + pct(abs(x))


def open_map(page, live):
    page.goto(live.url)
    page.wait_for_selector(".cell-button")


def test_the_map_shows_the_grid_and_follows_the_scenario(page, live):
    open_map(page, live)
    grid = live.get("/v1/forecasts/grid?trigger_type=disclosure_incident&severity=2&alignment=1")
    shown = cells(page)
    assert len(shown) == grid["count"]
    assert {(f["partner"], f["intel_type"]): pct(f["any_restriction"]["mean"])
            for f in grid["forecasts"]} == shown  # the API's numbers, no second computation
    shot(page, "map")

    before = page.inner_text("#map-caption")
    page.select_option("#severity", "0")
    page.select_option("#trigger-type", "surveillance_revelation")
    page.click("#scenario-form button[type=submit]")
    page.wait_for_function("t => document.getElementById('map-caption').textContent !== t",
                           arg=before)
    after = cells(page)
    other = live.get("/v1/forecasts/grid?trigger_type=surveillance_revelation&severity=0&alignment=1")
    assert after == {(f["partner"], f["intel_type"]): pct(f["any_restriction"]["mean"])
                     for f in other["forecasts"]}
    assert after != shown
    assert "trigger_type=surveillance_revelation" in page.url and "severity=0" in page.url
    page.goto(page.url)  # the address keeps the scenario: a link shows the same map
    page.wait_for_selector(".cell-button")
    assert cells(page) == after and page.input_value("#severity") == "0"


def test_partners_are_grouped_by_bloc_sortable_by_risk_and_unseen_ones_marked(page, live):
    open_map(page, live)
    vocab = live.get("/v1/vocab")
    blocs = page.eval_on_selector_all("tr.bloc th", "els => els.map(e => e.textContent)")
    assert blocs == [b["name"] for b in vocab["blocs"]
                     if any(p["bloc"] == b["code"] for p in vocab["partners"])]
    observed = set(live.get("/v1/models/current")["metadata"]["model_config"]["observed_partners"])
    marked = set(page.eval_on_selector_all("tr[data-partner]:has(.badge-unseen)",
                                           "els => els.map(e => e.dataset.partner)"))
    assert marked == {p["code"] for p in vocab["partners"]} - observed

    page.select_option("#sort", "type:humint")
    rows = page.eval_on_selector_all(
        "tbody tr", "rows => rows.map(r => r.classList.contains('bloc') ? null : "
                    "Number(r.querySelector('[data-type=humint]').dataset.mean))")
    groups, current = [], []
    for value in rows + [None]:
        if value is None:
            groups.append(current) if current else None
            current = []
        else:
            current.append(value)
    assert all(g == sorted(g, reverse=True) for g in groups)
    tops = [g[0] for g in groups]
    assert tops == sorted(tops, reverse=True)  # riskiest bloc first


def test_a_cell_opens_from_the_keyboard_with_levels_and_evidence(page, live):
    open_map(page, live)
    page.focus(".cell-button[tabindex='0']")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("[document.activeElement.dataset.partner, document.activeElement.dataset.type]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#cell-levels table")
    partner, intel_type = focused
    one = live.get(f"/v1/forecasts?partner={partner}&intel_type={intel_type}"
                   "&trigger_type=disclosure_incident&severity=2&alignment=1")
    rows = page.eval_on_selector_all("#cell-levels tbody tr",
                                     "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert len(rows) == 5  # any, then levels 0-3
    assert rows[0][1] == pct(one["any_restriction"]["mean"])
    assert rows[4][4] == f"{pct(one['levels']['3']['ci90'][0])} to {pct(one['levels']['3']['ci90'][1])}"
    page.wait_for_function("() => !document.querySelector('#cell-evidence').textContent"
                           ".includes('Loading')")
    episodes = live.get(f"/v1/episodes?partner={partner}&intel_type={intel_type}")
    evidence = page.inner_text("#cell-evidence")
    for episode in episodes["episodes"]:
        assert episode["trigger_id"] in evidence and episode["sources"][0] in evidence
    # the explanation and horizon panels answer, or say plainly that this server cannot
    for panel in ("#cell-explain", "#cell-horizon"):
        page.wait_for_function(f"() => !document.querySelector('{panel}').textContent"
                               ".includes('Loading')")
        assert page.locator(f"{panel} svg").count() or page.locator(f"{panel} .unavailable").count()
    shot(page, "cell")
    assert serious_violations(page) == []
    page.click("#cell-close")
    assert page.evaluate("document.activeElement.dataset.partner") == partner  # focus returns


def test_a_server_without_explanations_says_so_and_lists_the_cells_episodes(page, live):
    """An older server (no explain=true, no horizon route in its document): those panels say
    they are not available, and the evidence is the cell's own coded episodes."""
    page.route("**/openapi.json", lambda route: route.fulfill(json={"paths": {}}))
    open_map(page, live)
    page.click(".cell-button[data-partner=ISR][data-type=sources]")
    page.wait_for_selector("#cell-evidence ul.episodes")
    for panel in ("#cell-explain", "#cell-horizon"):
        assert "not available from this server" in page.inner_text(panel)
    coded = live.get("/v1/episodes?partner=ISR&intel_type=sources")
    assert f"The {coded['total']} episodes coded for this partner and type" in page.inner_text(
        "#cell-evidence")
    assert all(s in page.inner_text("#cell-evidence") for s in coded["episodes"][0]["sources"])


def test_a_coded_trigger_shows_the_live_map_and_marks_its_reactions(page, live):
    open_map(page, live)
    trigger = "2017-oval-office-disclosure"  # coded for ISR on every type in the template
    coded = live.get(f"/v1/episodes?trigger_id={trigger}")["episodes"]
    page.check("#mode-live")
    page.fill("#trigger-id", trigger)
    page.click("#scenario-form button[type=submit]")
    page.wait_for_selector("#live-note:not([hidden])")
    # the map is the live grid: every cell conditioned on the coded reactions
    grid = live.get(f"/v1/forecasts/grid?trigger_id={trigger}&sort=partner")
    shown = cells(page)
    assert shown == {(f["partner"], f["intel_type"]): pct(f["any_restriction"]["mean"])
                     for f in grid["forecasts"]}
    # not the trigger's coded scenario for a new trigger, which the map showed before
    scenario = grid["scenario"]
    new_trigger = live.get(f"/v1/forecasts/grid?trigger_type={scenario['trigger_type']}"
                           f"&severity={scenario['severity']}&alignment={scenario['alignment']}")
    assert shown != {(f["partner"], f["intel_type"]): pct(f["any_restriction"]["mean"])
                     for f in new_trigger["forecasts"]}
    marked = page.eval_on_selector_all(".cell-button:has(.mark-observed)",
                                       "els => els.map(e => [e.dataset.partner, e.dataset.type])")
    assert sorted(map(tuple, marked)) == sorted((e["partner"], e["intel_type"]) for e in coded)
    caption = page.inner_text("#map-caption")
    assert f"severity {coded[0]['severity']}" in caption
    assert f"conditioned on {len(grid['conditioned_on'])} coded reactions" in caption
    assert "trigger_id=" in page.url
    shot(page, "map-live")
    page.click(".cell-button[data-partner=SAU][data-type=humint]")
    page.wait_for_selector("#cell-live h5")
    answer = live.get(f"/v1/forecasts?partner=SAU&intel_type=humint&trigger_id={trigger}")
    assert f"the trigger's {len(answer['conditioned_on'])} coded reactions" in page.inner_text(
        "#cell-live h5")
    assert pct(answer["any_restriction"]["mean"]) in page.inner_text("#cell-live")
    assert shown[("SAU", "humint")] == pct(answer["any_restriction"]["mean"])  # the map's too


def test_two_scenarios_side_by_side_with_their_difference(page, live):
    page.goto(live.url + "#compare")
    page.select_option("#c-partner", "ISR")
    page.select_option("#c-intel-type", "")
    page.select_option("#a-severity", "0")
    page.select_option("#b-severity", "3")
    page.click("#compare-form button[type=submit]")
    page.wait_for_selector("#compare-table caption:has-text('severity 0')")
    answer = live.get("/v1/forecasts/compare?partner=ISR&severity_a=0&severity_b=3")
    rows = page.eval_on_selector_all("#compare-table tbody tr",
                                     "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert len(rows) == len(answer["comparisons"]) == 8
    best = max(answer["comparisons"], key=lambda c: c["difference"]["mean"])
    assert rows[0][3] == signed_pct(best["difference"]["mean"])  # sorted by the difference
    assert rows[0][5] == pct(best["difference"]["prob_positive"])
    assert page.locator("#compare-result svg circle").count() == 8
    shot(page, "compare")
    assert serious_violations(page) == []


def test_model_health_shows_the_version_its_verdict_and_plots(page, live, tokens):
    page.goto(live.url + "#health")
    current = live.get("/v1/models")["current"]
    page.wait_for_selector(f"#health-model dd:has-text('{current}')")
    page.wait_for_selector("#health-diagnostics .verdict-pass")
    page.wait_for_selector("#health-refits p")
    assert "No evaluation is stored" in page.inner_text("#health-evaluation")
    page.click("#health-plots a:has-text('forest')")
    page.wait_for_function("() => document.getElementById('plot-image').naturalWidth > 0")
    assert "forest" in page.get_attribute("#plot-image", "alt")
    assert serious_violations(page) == []

    reports.save_result(live.settings, current, "backtest", BACKTEST)  # as `forecast backtest` does
    job = live.get("/v1/refits", tokens["modeler"], method="POST")  # no worker: it stays queued
    page.reload()
    page.wait_for_selector(f"#health-refits th:text-is('{job['id']}')")
    assert "1 queued, 0 running" in page.inner_text("#health-refits")
    page.wait_for_selector("#health-evaluation table")
    rows = page.eval_on_selector_all("#health-evaluation tbody tr",
                                     "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert [r[0] for r in rows] == ["hierarchical (the model)", "climatology", "climatology"]
    assert rows[0][1:3] == ["0.123", "0.456"] and rows[2][1] == "-0.012 [-0.03, 0.005]"
    shot(page, "health")


def test_narrow_screens_keep_the_map_usable_and_accessible(browser, live):
    context = browser.new_context(viewport={"width": 400, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    open_map(page, live)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400  # the map scrolls inside its own box, the page does not
    shot(page, "map-narrow", full_page=False)
    assert serious_violations(page) == []
    context.close()


def test_closed_reads_ask_for_a_token_and_send_it(browser, api_template, tokens, tmp_path):
    settings = dataclasses.replace(_instance(api_template, tmp_path / "closed"), open_reads=False)
    server = LiveServer(settings)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    try:
        page.goto(server.url)
        page.wait_for_selector("#token-form:not([hidden])")
        assert page.evaluate("document.activeElement.id") == "token-input"
        page.fill("#token-input", tokens["reader"])
        page.press("#token-input", "Enter")
        page.wait_for_selector(".cell-button")
        assert page.is_hidden("#token-form")
    finally:
        context.close()
        server.stop()


def test_the_horizon_panel_follows_the_chosen_trigger_scenario(page, live):
    """The horizon curve counts the triggers of the map's scenario (its type and severity,
    under its alignment), as GET /v1/forecasts/horizon answers with those parameters, not the
    every-trigger curve."""
    scenario = "trigger_type=legal_case&severity=1&alignment=2"
    chosen = live.get(f"/v1/forecasts/horizon?partner=GBR&intel_type=sigint&{scenario}")
    every = live.get("/v1/forecasts/horizon?partner=GBR&intel_type=sigint")
    shown_if_chosen = f"{pct(chosen['curve'][-1]['any_restriction']['mean'])} within 36 months"
    shown_if_every = f"{pct(every['curve'][-1]['any_restriction']['mean'])} within 36 months"
    assert shown_if_chosen != shown_if_every  # else the page could not tell them apart
    page.goto(f"{live.url}?{scenario}")
    page.wait_for_selector(".cell-button")
    page.click('.cell-button[data-partner="GBR"][data-type="sigint"]')
    page.wait_for_selector("#cell-horizon svg")
    said = page.inner_text("#cell-horizon p.help")
    assert shown_if_chosen in said and "counting only triggers like this one" in said.lower()
    assert "legal" in said.lower() and shown_if_every not in said
