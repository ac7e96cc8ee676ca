/* The forecaster's dashboard. Every number shown is read from this server's JSON API
   (docs/dashboard.md maps each view to its routes); nothing is computed here but layout,
   colours and sorting. No library: DOM and SVG built by hand, text never parsed as HTML. */
"use strict";

const TOKEN_KEY = "forecast-token";
const PLOTS = ["trace", "rank", "forest", "energy", "ppc", "prior_posterior"];
const SVG_NS = "http://www.w3.org/2000/svg";
// viridis (matplotlib), 9 stops: sequential, colour-blind safe, monotone in lightness
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80",
                 "#5ec962", "#addc30", "#fde725"];
const LEGEND_TICKS = [0, 0.05, 0.1, 0.25, 0.5, 1];

const state = {
  vocab: null, capabilities: {explain: false, horizon: false}, observed: null,
  grid: null, scenario: null, live: null, colourRange: null, asked: {}, cell: null, healthLoaded: false, plotUrl: null,
};

/* ---------- small helpers ---------- */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function pct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "n/a";
  if (x === 0) return "0%";
  const v = x * 100;
  return (Math.abs(v) < 10 ? v.toFixed(1) : v.toFixed(0)) + "%";
}

function signedPct(x) {
  if (x === null || x === undefined) return "n/a";
  return (x > 0 ? "+" : x < 0 ? "\u2212" : "") + pct(Math.abs(x));
}

function interval(ci) {
  return ci ? `${pct(ci[0])} to ${pct(ci[1])}` : "n/a";
}

function num(x, digits = 3) {
  if (x === null || x === undefined) return "n/a";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 1000 ? x.toFixed(0) : String(Number(x.toPrecision(digits)));
}

// A summary may come as {mean, median, ci50, ci90} or as a bare number.
function meanOf(v) { return v !== null && typeof v === "object" ? v.mean : v; }

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

/* ---------- the API ---------- */

class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? {Authorization: `Bearer ${token}`} : {};
}

async function request(path, params, accept = "application/json") {
  const query = params ? "?" + new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "")) : "";
  const response = await fetch(path + query, {headers: {Accept: accept, ...authHeaders()}});
  if (response.status === 401) {
    askForToken(sessionStorage.getItem(TOKEN_KEY)
      ? "The token was refused (unknown, revoked or expired). Enter another."
      : "Reads on this server need a token.");
  }
  if (!response.ok) {
    let title = response.statusText || `HTTP ${response.status}`;
    let detail = "";
    try {
      const problem = await response.json();
      title = problem.title || title;
      detail = problem.detail || "";
    } catch (e) { /* not a problem document */ }
    throw new ApiError(response.status, title, detail);
  }
  return response;
}

async function api(path, params) {
  return (await request(path, params)).json();
}

function askForToken(why) {
  const form = $("token-form");
  $("token-why").textContent = why + " Create one with `forecast token create NAME --role reader`.";
  if (form.hidden) {
    form.hidden = false;
    $("token-input").focus();
  }
}

// Answers can arrive out of order: only the latest request of each kind may draw.
function ticket(kind) {
  const n = (state.asked[kind] || 0) + 1;
  state.asked[kind] = n;
  return () => state.asked[kind] === n;
}

/* ---------- colours ---------- */

// Colour position of a probability: a square root of 0-100% (the same colour means the same
// risk in every scenario), or stretched linearly over the map's own range (to tell its cells apart).
function scale(p) {
  const clamp = (v) => Math.min(Math.max(v, 0), 1);
  const range = state.colourRange;
  if (range) return range[1] > range[0] ? clamp((p - range[0]) / (range[1] - range[0])) : 0.5;
  return Math.sqrt(clamp(p));
}

function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  const a = hexRgb(VIRIDIS[i]), b = hexRgb(VIRIDIS[i + 1]);
  return a.map((v, k) => Math.round(v + (b[k] - v) * f));
}

function hexRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function luminance([r, g, b]) {
  const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

// black or white, whichever contrasts more (at least 4.5:1 on every viridis colour)
function inkOn(rgb) {
  const l = luminance(rgb);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000" : "#fff";
}

const rgbCss = (rgb) => `rgb(${rgb.join(",")})`;

function drawLegend() {
  const width = 320, height = 44, range = state.colourRange;
  const tickValues = range ? [0, 0.25, 0.5, 0.75, 1].map((f) => range[0] + f * (range[1] - range[0]))
    : LEGEND_TICKS;
  const stops = Array.from({length: 21}, (_, i) => s("stop", {
    offset: `${i * 5}%`, "stop-color": rgbCss(viridis(i / 20))}));
  const ticks = tickValues.map((p) => {
    const x = 16 + scale(p) * (width - 32);
    return s("g", {},
      s("line", {x1: x, x2: x, y1: 22, y2: 27, stroke: "currentColor"}),
      s("text", {x, y: 40, "text-anchor": "middle", "font-size": 11, fill: "currentColor"}, pct(p)));
  });
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img"},
    s("defs", {}, s("linearGradient", {id: "legend-gradient"}, stops)),
    s("rect", {x: 16, y: 4, width: width - 32, height: 18, fill: "url(#legend-gradient)"}),
    ticks);
  $("legend").replaceChildren(
    h("span", {class: "legend-title", text: range
      ? "Posterior mean of P(any restriction), stretched over this map's range"
      : "Posterior mean of P(any restriction) (square-root scale)"}),
    svg,
    h("span", {class: "legend-key"},
      h("span", {class: "swatch-unseen"}, "unseen"), " partner with no coded episode: its forecast is pooled from its bloc",
      h("span", {class: "mark-observed"}, " \u25cf"), " coded reaction to the chosen trigger"));
}

/* ---------- start ---------- */

async function start() {
  bindViews();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    $("token-form").hidden = true;
    state.healthLoaded = false;
    load();
  });
  $("scenario-form").addEventListener("submit", (ev) => { ev.preventDefault(); showMap(); });
  for (const id of ["sort", "colour"]) {
    $(id).addEventListener("change", () => { if (state.grid) { drawMap(); rememberScenario(); } });
  }
  for (const el of document.querySelectorAll("input[name=mode]")) {
    el.addEventListener("change", () => modeChanged(true));
  }
  $("compare-form").addEventListener("submit", (ev) => { ev.preventDefault(); showComparison(); });
  $("cell-close").addEventListener("click", closeCell);
  await load();
}

async function load() {
  setStatus("Loading\u2026");
  try {
    const [vocab, doc] = await Promise.all([api("/v1/vocab"), api("/openapi.json")]);
    state.vocab = vocab;
    state.capabilities = capabilities(doc);
    fillControls();
    await loadModel();  // first: the map marks the partners the fit had no episode of
    await Promise.all([showMap(), loadTriggerIds()]);
    routeTo(currentView());
  } catch (err) {
    setStatus(String(err.message || err), true);
  }
}

// Which optional routes this server has: read from its own API document.
function capabilities(doc) {
  const paths = (doc && doc.paths) || {};
  const one = paths["/v1/forecasts"] && paths["/v1/forecasts"].get;
  const params = (one && one.parameters) || [];
  return {
    explain: params.some((p) => p.name === "explain"),
    horizon: Boolean(paths["/v1/forecasts/horizon"]),
  };
}

async function loadModel() {
  try {
    const model = await api("/v1/models/current");
    // the partners with coded episodes in the fit's data; the rest are pooled from their bloc
    const cfg = (model.metadata && model.metadata.model_config) || {};
    state.observed = Array.isArray(cfg.observed_partners) ? cfg.observed_partners : null;
    $("model-stamp").textContent =
      `Model ${model.version} \u00b7 fitted ${model.fitted_at.slice(0, 16).replace("T", " ")} UTC` +
      ` \u00b7 ${model.episodes} episodes \u00b7 verdict ${model.verdict}`;
  } catch (err) {
    $("model-stamp").textContent = `No model: ${err.message}`;
  }
}

async function loadTriggerIds() {
  try {
    const first = await api("/v1/episodes", {limit: 1});
    const page = await api("/v1/episodes", {limit: 1000, offset: Math.max(0, first.total - 1000)});
    const ids = [...new Set(page.episodes.map((e) => e.trigger_id))].reverse();
    $("trigger-ids").replaceChildren(...ids.map((id) => h("option", {value: id})));
  } catch (err) { /* the datalist is a convenience only */ }
}

function options(select, entries, selected) {
  select.replaceChildren(...entries.map(([value, label]) =>
    h("option", {value, selected: String(value) === String(selected)}, label)));
}

function fillControls() {
  const v = state.vocab;
  const types = v.trigger_types.map((t) => [t.code, t.name]);
  const scaleOpts = (entries) => entries.map((e) => [e.code, `${e.code} \u00b7 ${e.name}`]);
  for (const [prefix, severity] of [["", 2], ["a-", 2], ["b-", 3]]) {
    options($(`${prefix}trigger-type`), types, "disclosure_incident");
    options($(`${prefix}severity`), scaleOpts(v.severity), severity);
    options($(`${prefix}alignment`), scaleOpts(v.alignment), 1);
  }
  options($("sort"), [["codebook", "bloc, then codebook order"], ["risk", "risk, highest first (within bloc)"],
    ...v.intel_types.map((t) => [`type:${t.code}`, `risk in ${t.code}`])], "codebook");
  options($("colour"), [["fixed", "0-100%, the same in every scenario"], ["range", "stretched over this map"]], "fixed");
  options($("c-partner"), [["", "every partner"], ...v.partners.map((p) => [p.code, p.name])], "ISR");
  options($("c-intel-type"), [["", "every type"], ...v.intel_types.map((t) => [t.code, t.name])], "");
  restoreScenario();
}

// The map's scenario lives in the address (?trigger_type=&severity=&alignment= or
// ?trigger_id=, &sort=, &colour=): a forecaster can send the view they are looking at.
const URL_FIELDS = {trigger_type: "trigger-type", severity: "severity", alignment: "alignment",
                    trigger_id: "trigger-id", sort: "sort", colour: "colour"};

function restoreScenario() {
  const params = new URLSearchParams(location.search);
  for (const [name, id] of Object.entries(URL_FIELDS)) {
    const value = params.get(name);
    const el = $(id);
    if (value === null) continue;
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === value)) continue;
    el.value = value;
  }
  if (params.get("trigger_id")) {
    $("mode-live").checked = true;
    modeChanged(false);
  }
}

function rememberScenario() {
  const live = document.querySelector("input[name=mode]:checked").value === "live";
  const params = new URLSearchParams();
  for (const [name, id] of Object.entries(URL_FIELDS)) {
    const isLiveField = name === "trigger_id";
    if (["sort", "colour"].includes(name) || isLiveField === live) params.set(name, $(id).value);
  }
  history.replaceState(null, "", `?${params}${location.hash}`);
}

/* ---------- views ---------- */

function currentView() {
  const name = location.hash.replace("#", "");
  return ["map", "compare", "health"].includes(name) ? name : "map";
}

function bindViews() {
  window.addEventListener("hashchange", () => routeTo(currentView(), true));
}

function routeTo(view, focus = false) {
  for (const name of ["map", "compare", "health"]) {
    $(`view-${name}`).hidden = name !== view;
    const link = document.querySelector(`a[data-view=${name}]`);
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (focus) setStatus("");
  if (view === "health" && !state.healthLoaded) showHealth();
  if (view === "compare" && !$("compare-result").hasChildNodes()) showComparison();
  if (focus) $(`${view}-title`).focus();
}

function modeChanged(focus = true) {
  const live = document.querySelector("input[name=mode]:checked").value === "live";
  for (const el of document.querySelectorAll(".field.hypothetical")) el.hidden = live;
  for (const el of document.querySelectorAll(".field.live")) el.hidden = !live;
  if (live && focus === true) $("trigger-id").focus();
}

/* ---------- the risk map ---------- */

// The map's grid: for a new trigger under the form's scenario, or live after a coded trigger
// (GET /v1/forecasts/grid?trigger_id=: every cell conditioned on the reactions coded so far,
// under the scenario the trigger is coded with).
async function gridFromForm() {
  const live = document.querySelector("input[name=mode]:checked").value === "live";
  if (!live) {
    const scenario = {trigger_type: $("trigger-type").value, severity: Number($("severity").value),
                      alignment: Number($("alignment").value)};
    return {grid: await api("/v1/forecasts/grid", {...scenario, sort: "partner"}), scenario, live: null};
  }
  const id = $("trigger-id").value.trim();
  if (!id) throw new ApiError(400, "Give a trigger id", "trigger_id: empty");
  const grid = await api("/v1/forecasts/grid", {trigger_id: id, sort: "partner"});
  return {grid, scenario: grid.scenario,
          live: {trigger_id: id, conditioned: grid.conditioned_on.length,
                 episodes: grid.conditioned_on.concat(grid.not_conditioned_on || [])}};
}

async function showMap() {
  const liveMode = document.querySelector("input[name=mode]:checked").value === "live";
  setStatus(liveMode ? "Computing the live map (every cell conditioned on the coded reactions)\u2026"
    : "Computing the map\u2026");
  const latest = ticket("map");
  $("risk-map").setAttribute("aria-busy", "true");
  try {
    const {grid, scenario, live} = await gridFromForm();
    if (!latest()) return;
    state.grid = grid;
    state.scenario = scenario;
    state.live = live;
    drawMap();
    rememberScenario();
    const note = $("live-note");
    if (live) {
      const unused = live.episodes.length - live.conditioned;
      note.hidden = false;
      note.textContent = `Trigger ${live.trigger_id} (${describe(scenario)}): every cell is ` +
        `conditioned on its ${live.conditioned} coded reactions (\u25cf; a coded cell on the others), ` +
        `store revision ${grid.store_revision}` +
        (unused ? `; ${unused} coded for codes the model predates are not used.` : ".") +
        " Open a cell for its explanation and evidence.";
    } else {
      note.hidden = true;
    }
    setStatus(`Map: ${grid.count} cells ` + (live ? `after trigger ${live.trigger_id}, conditioned on ` +
      `${live.conditioned} coded reactions` : `under ${describe(scenario)}`) + `, model ${grid.model.version}.`);
  } catch (err) {
    if (latest()) setStatus(`The map could not be drawn: ${err.message}`, true);
  } finally {
    if (latest()) $("risk-map").removeAttribute("aria-busy");
  }
}

function describe(scenario) {
  const v = state.vocab;
  const type = v.trigger_types.find((t) => t.code === scenario.trigger_type);
  const sev = v.severity.find((e) => e.code === scenario.severity);
  const ali = v.alignment.find((e) => e.code === scenario.alignment);
  return `${type ? type.name : scenario.trigger_type}, severity ${scenario.severity}` +
    `${sev ? ` (${sev.name})` : ""}, alignment ${scenario.alignment}${ali ? ` (${ali.name})` : ""}`;
}

function partnerRows() {
  const v = state.vocab;
  const byCell = new Map(state.grid.forecasts.map((f) => [`${f.partner}|${f.intel_type}`, f]));
  const types = v.intel_types.filter((t) => state.grid.forecasts.some((f) => f.intel_type === t.code));
  const order = $("sort").value;
  const key = (p) => {
    const values = types.map((t) => byCell.get(`${p.code}|${t.code}`)).filter(Boolean)
      .map((f) => f.any_restriction.mean);
    if (order === "risk") return Math.max(...values);
    if (order.startsWith("type:")) {
      const f = byCell.get(`${p.code}|${order.slice(5)}`);
      return f ? f.any_restriction.mean : -1;
    }
    return 0;
  };
  const blocs = v.blocs.map((b) => {
    const partners = v.partners.filter((p) => p.bloc === b.code &&
      state.grid.forecasts.some((f) => f.partner === p.code));
    const ranked = partners.map((p, i) => ({p, i, k: key(p)}))
      .sort((x, y) => (y.k - x.k) || (x.i - y.i)).map((x) => x.p);
    return {bloc: b, partners: ranked, k: Math.max(...ranked.map(key), -1)};
  }).filter((b) => b.partners.length);
  if (order !== "codebook") blocs.sort((x, y) => y.k - x.k);
  return {blocs, types, byCell};
}

function drawMap() {
  const {blocs, types, byCell} = partnerRows();
  const means = state.grid.forecasts.map((f) => f.any_restriction.mean);
  state.colourRange = $("colour").value === "range" ? [Math.min(...means), Math.max(...means)] : null;
  drawLegend();
  const coded = new Map((state.live ? state.live.episodes : [])
    .map((e) => [`${e.partner}|${e.intel_type}`, e]));
  const observed = state.observed ? new Set(state.observed) : null;
  const table = $("risk-map");
  table.tHead.replaceChildren(h("tr", {},
    h("th", {scope: "col", text: "Partner"}),
    types.map((t) => h("th", {scope: "col", title: t.name}, h("abbr", {title: t.name}, t.code)))));
  const body = [];
  let row = 0;
  for (const {bloc, partners} of blocs) {
    body.push(h("tr", {class: "bloc"}, h("th", {scope: "colgroup", colspan: types.length + 1}, bloc.name)));
    for (const p of partners) {
      const unseen = observed ? !observed.has(p.code) : false;
      const cells = types.map((t, col) => {
        const f = byCell.get(`${p.code}|${t.code}`);
        if (!f) return h("td", {}, "\u2013");
        const mean = f.any_restriction.mean, ci = f.any_restriction.ci90;
        const rgb = viridis(scale(mean));
        const episode = coded.get(`${p.code}|${t.code}`);
        const label = `${p.name}, ${t.name}: P(any restriction) ${pct(mean)}, 90% interval ` +
          `${interval(ci)}${unseen ? ", unseen partner" : ""}` +
          `${episode ? `, coded reaction level ${episode.level}` : ""}`;
        const bar = h("span", {class: "ci-bar"});
        bar.style.left = `${ci[0] * 100}%`;
        bar.style.width = `${Math.max((ci[1] - ci[0]) * 100, 1)}%`;
        const button = h("button", {
          type: "button", class: "cell-button" + (unseen ? " unseen" : ""), tabindex: -1,
          "aria-label": label, "data-partner": p.code, "data-type": t.code,
          "data-row": row, "data-col": col, "data-mean": mean, title: label,
          onclick: () => openCell(p.code, t.code),
        }, h("span", {class: "value"}, pct(mean), episode ? h("span", {class: "mark-observed"}, "\u25cf") : null),
        h("span", {class: "ci-track"}, bar));
        button.style.backgroundColor = rgbCss(rgb);
        button.style.color = inkOn(rgb);
        return h("td", {}, button);
      });
      body.push(h("tr", {"data-partner": p.code},
        h("th", {scope: "row", class: unseen ? "unseen" : null},
          h("span", {class: "partner-name"}, p.name),
          unseen ? h("span", {class: "badge-unseen"}, "unseen") : null),
        cells));
      row += 1;
    }
  }
  table.tBodies[0].replaceChildren(...body);
  $("map-caption").textContent = `P(any restriction) by partner and intelligence type: ` +
    (state.live ? `after trigger ${state.live.trigger_id} (${describe(state.scenario)}), ` +
      `conditioned on ${state.live.conditioned} coded reactions` : describe(state.scenario)) +
    ` (model ${state.grid.model.version})`;
  const first = table.querySelector(".cell-button");
  if (first) first.tabIndex = 0;
}

// Roving focus: one cell in the tab order; the arrow keys move, Home/End go to the row's ends.
function mapKeys(ev) {
  const cell = ev.target.closest(".cell-button");
  if (!cell) return;
  let r = Number(cell.dataset.row), c = Number(cell.dataset.col);
  const moves = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]};
  if (ev.key in moves) { r += moves[ev.key][0]; c += moves[ev.key][1]; }
  else if (ev.key === "Home") c = 0;
  else if (ev.key === "End") c = 1000;
  else return;
  ev.preventDefault();
  const table = $("risk-map");
  const rowCells = table.querySelectorAll(`.cell-button[data-row="${Math.max(r, 0)}"]`);
  if (!rowCells.length) return;
  const target = rowCells[Math.min(Math.max(c, 0), rowCells.length - 1)];
  cell.tabIndex = -1;
  target.tabIndex = 0;
  target.focus();
}

/* ---------- a cell ---------- */

function closeCell() {
  $("cell").hidden = true;
  const back = state.cell && document.querySelector(
    `.cell-button[data-partner="${state.cell.partner}"][data-type="${state.cell.intel_type}"]`);
  state.cell = null;
  if (back) back.focus();
}

async function openCell(partner, intelType) {
  const v = state.vocab;
  const p = v.partners.find((x) => x.code === partner), t = v.intel_types.find((x) => x.code === intelType);
  state.cell = {partner, intel_type: intelType};
  const panel = $("cell");
  panel.hidden = false;
  $("cell-title").textContent = `${p ? p.name : partner} \u00b7 ${t ? t.name : intelType}`;
  $("cell-scenario").textContent = state.live
    ? `Coded trigger ${state.live.trigger_id} (${describe(state.scenario)})`
    : describe(state.scenario);
  for (const id of ["cell-levels", "cell-live", "cell-explain", "cell-horizon", "cell-evidence"]) {
    $(id).replaceChildren(h("p", {class: "help", text: "Loading\u2026"}));
  }
  $("cell-live").replaceChildren();
  panel.focus();
  const base = {partner, intel_type: intelType};
  const query = {...base, ...state.scenario};
  const explain = state.capabilities.explain;
  const latest = ticket("cell");
  const only = (draw) => (value) => { if (latest()) return draw(value); };
  const tasks = [
    api("/v1/forecasts", explain ? {...query, explain: "true", evidence_limit: 20} : query)
      .then(only((f) => { drawLevels(f, "cell-levels"); drawExplanation(f); return drawEvidence(f, base, latest); }))
      .catch(only((err) => failed(["cell-levels", "cell-explain", "cell-evidence"], err))),
    drawHorizon(base, state.scenario, latest),
  ];
  if (state.live) {
    tasks.push(api("/v1/forecasts", {...base, trigger_id: state.live.trigger_id})
      .then(only(drawLive)).catch(only((err) => failed(["cell-live"], err))));
  }
  await Promise.all(tasks);
}

// A 409 is the server saying this version cannot answer (say, fitted before the feature): a
// fact about the model to show plainly, not a failure of the page.
function failed(ids, err) {
  const cls = err.status === 409 ? "unavailable" : "error";
  for (const id of ids) $(id).replaceChildren(h("p", {class: cls, text: err.message}));
}

function unavailable(what, route) {
  return h("p", {class: "unavailable"},
    `${what} is not available from this server (it does not offer ${route}).`);
}

// Level probabilities: a table (the numbers) and a chart (mean, 50% and 90% intervals).
function intervalChart(rows, label) {
  const width = 320, rowH = 26, left = 90, right = 12, height = rows.length * rowH + 24;
  const x = (p) => left + p * (width - left - right);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((p) => s("g", {},
    s("line", {x1: x(p), x2: x(p), y1: 0, y2: height - 18, stroke: "#999", "stroke-dasharray": "2 3"}),
    s("text", {x: x(p), y: height - 4, "text-anchor": "middle", "font-size": 11, fill: "currentColor"}, pct(p))));
  const marks = rows.map((r, i) => {
    const y = i * rowH + rowH / 2;
    return s("g", {},
      s("text", {x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 12, fill: "currentColor"}, r.label),
      s("line", {x1: x(r.ci90[0]), x2: x(r.ci90[1]), y1: y, y2: y, stroke: "#3b528b", "stroke-width": 2}),
      s("line", {x1: x(r.ci50[0]), x2: x(r.ci50[1]), y1: y, y2: y, stroke: "#3b528b", "stroke-width": 7}),
      s("circle", {cx: x(r.mean), cy: y, r: 4.5, fill: "#fde725", stroke: "#000"}));
  });
  return s("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label},
    s("title", {}, label), grid, marks);
}

function drawLevels(f, target) {
  const names = Object.fromEntries(state.vocab.levels.map((l) => [String(l.code), l.name]));
  const rows = [{label: "any (1+)", ...f.any_restriction},
    ...Object.entries(f.levels).map(([k, v]) => ({label: `${k} ${names[k] || ""}`, ...v}))];
  const table = h("table", {class: "numbers"},
    h("caption", {text: "Posterior mean, median and intervals"}),
    h("thead", {}, h("tr", {}, ["level", "mean", "median", "50% interval", "90% interval"]
      .map((c) => h("th", {scope: "col", text: c})))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("th", {scope: "row", text: r.label}), h("td", {text: pct(r.mean)}), h("td", {text: pct(r.median)}),
      h("td", {text: interval(r.ci50)}), h("td", {text: interval(r.ci90)})))));
  $(target).replaceChildren(
    intervalChart(rows, "Level probabilities: dots are posterior means, thick bars 50% and thin bars 90% intervals"),
    table,
    h("p", {class: "help", text: `Model ${f.model.version} (${f.model.verdict}), ${f.model.episodes} episodes` +
      (f.model.draws_used ? `, ${f.model.draws_used} draws` : "")}));
}

function drawLive(f) {
  const rows = (f.conditioned_on || []).map((e) => h("li", {},
    `${e.partner} ${e.intel_type}: level ${e.level} (${e.trigger_date}, ${e.confidence} confidence)`,
    sourcesList(e.sources)));
  $("cell-live").replaceChildren(
    h("h5", {text: `Live: conditioned on the trigger's ${rows.length} coded reactions`}),
    h("p", {}, `P(any restriction) ${pct(f.any_restriction.mean)} (90% interval ${interval(f.any_restriction.ci90)})` +
      (f.observed_level !== null && f.observed_level !== undefined
        ? `; this cell is coded at level ${f.observed_level}` : "; this cell is not coded yet") +
      `; ${f.draws_used} draws.`),
    rows.length ? h("details", {}, h("summary", {text: "The coded reactions it conditions on"}), h("ul", {}, rows)) : null);
}

function sourcesList(sources) {
  const list = Array.isArray(sources) ? sources : String(sources || "").split(" | ").filter(Boolean);
  return list.length ? h("ul", {class: "sources"}, list.map((x) => h("li", {text: x}))) : null;
}

// The explanation (GET /v1/forecasts?explain=true): the linear predictor's terms on the
// log-odds scale as a waterfall from 0, then minus the 0|1 cutpoint: the bar ends at the
// log-odds of P(any restriction). Means of the draws: the mean of a sum is the sum of means.
function drawExplanation(f) {
  const target = $("cell-explain");
  if (!state.capabilities.explain) {
    target.replaceChildren(unavailable("The explanation", "GET /v1/forecasts?explain=true"));
    return;
  }
  const ex = f.explanation || {};
  const terms = ex.terms || [];
  if (!terms.length) { target.replaceChildren(h("p", {class: "help", text: "No terms in the answer."})); return; }
  const rows = terms.map((t) => ({label: t.label || t.term, value: meanOf(t.log_odds) || 0, term: t}));
  if (ex.cutpoint) rows.push({label: "minus the 0|1 cutpoint", value: -meanOf(ex.cutpoint), term: null});
  let run = 0;
  const steps = rows.map((r) => { const from = run; run += r.value; return [from, run]; });
  const lo = Math.min(0, ...steps.flat()), hi = Math.max(0, ...steps.flat());
  const width = 380, rowH = 22, left = 170, right = 48, height = (rows.length + 1) * rowH + 26;
  const x = (v) => left + (v - lo) / ((hi - lo) || 1) * (width - left - right);
  const bars = rows.map((r, i) => {
    const [a, b] = steps[i], y = i * rowH + 4;
    return s("g", {},
      s("text", {x: left - 6, y: y + 13, "text-anchor": "end", "font-size": 11, fill: "currentColor"},
        r.label.length > 27 ? r.label.slice(0, 26) + "\u2026" : r.label),
      s("rect", {x: Math.min(x(a), x(b)), y, width: Math.max(Math.abs(x(b) - x(a)), 1), height: rowH - 6,
                 fill: r.value >= 0 ? "#b2182b" : "#2166ac"}),
      s("text", {x: Math.max(x(a), x(b)) + 4, y: y + 13, "font-size": 11, fill: "currentColor"},
        (r.value >= 0 ? "+" : "\u2212") + Math.abs(r.value).toFixed(2)));
  });
  const yEnd = rows.length * rowH + 4;
  const total = s("g", {},
    s("text", {x: left - 6, y: yEnd + 13, "text-anchor": "end", "font-size": 11, "font-weight": 700, fill: "currentColor"},
      `= P(any) ${pct(f.any_restriction.mean)}`),
    s("rect", {x: Math.min(x(0), x(run)), y: yEnd, width: Math.max(Math.abs(x(run) - x(0)), 1), height: rowH - 6,
               fill: "#555"}),
    s("text", {x: Math.max(x(0), x(run)) + 4, y: yEnd + 13, "font-size": 11, fill: "currentColor"}, run.toFixed(2)));
  const zero = s("line", {x1: x(0), x2: x(0), y1: 0, y2: height - 20, stroke: "currentColor"});
  const label = "Waterfall of the log-odds terms from 0: red raises the risk, blue lowers it; " +
    "the last bar is the log-odds of any restriction";
  const chart = s("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label},
    s("title", {}, label), zero, bars, total,
    s("text", {x: x(0), y: height - 6, "text-anchor": "middle", "font-size": 11, fill: "currentColor"}, "0 (log-odds)"));
  const interval90 = (sm) => (sm && sm.ci90 ? `${signedPct(sm.ci90[0])} to ${signedPct(sm.ci90[1])}` : "n/a");
  const table = h("table", {class: "numbers"},
    h("caption", {text: "Each term: its log-odds and how much it moves P(any restriction) against its population value"}),
    h("thead", {}, h("tr", {}, ["term", "log-odds", "shift of P(any)", "90% interval"].map((c) => h("th", {scope: "col", text: c})))),
    h("tbody", {}, terms.map((t, i) => h("tr", {},
      h("th", {scope: "row"}, rows[i].label, t.note ? h("span", {class: "help", text: ` (${t.note})`}) : null),
      h("td", {text: rows[i].value.toFixed(3)}),
      h("td", {text: signedPct(meanOf(t.any_restriction_shift))}),
      h("td", {text: interval90(t.any_restriction_shift)})))));
  target.replaceChildren(chart, h("div", {class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Explanation terms"}, table));
}

// The horizon: P(any restriction) within so many months, with its 90% band, counting only the
// triggers of the chosen scenario's type and severity, under its alignment (the route's
// trigger_type, severity and alignment); without a scenario, every coded kind of trigger.
function horizonQuery(base, scenario) {
  if (!scenario) return base;
  const {trigger_type, severity, alignment} = scenario;
  return {...base, trigger_type, severity, alignment};
}

function horizonScope(scenario) {
  return scenario
    ? `counting only triggers like this one (${describe(scenario)}), at their coded rate`
    : "from whatever triggers arrive, at the coded rates of every trigger type and severity";
}

async function drawHorizon(base, scenario, latest) {
  const target = $("cell-horizon");
  if (!state.capabilities.horizon) {
    target.replaceChildren(unavailable("The horizon curve", "GET /v1/forecasts/horizon"));
    return;
  }
  try {
    const answer = await api("/v1/forecasts/horizon", horizonQuery(base, scenario));
    if (!latest()) return;
    const curve = answer.curve || [];
    const pts = curve.map((c) => {
      const a = c.any_restriction;
      const band = (a && (a.ci90 || a.ci50)) || [meanOf(a), meanOf(a)];
      return {m: c.months, mean: meanOf(a), lo: band[0], hi: band[1], triggers: meanOf(c.expected_triggers)};
    }).filter((p) => p.mean !== undefined && p.mean !== null);
    if (!pts.length) { target.replaceChildren(h("p", {class: "help", text: "The answer holds no curve."})); return; }
    const width = 340, height = 180, left = 44, right = 10, top = 8, bottom = 30;
    const maxM = Math.max(...pts.map((p) => p.m)), maxP = Math.min(1, Math.max(...pts.map((p) => p.hi)) * 1.1) || 1;
    const x = (m) => left + m / (maxM || 1) * (width - left - right);
    const y = (p) => top + (1 - p / maxP) * (height - top - bottom);
    const band = pts.map((p) => `${x(p.m)},${y(p.hi)}`).concat(pts.slice().reverse().map((p) => `${x(p.m)},${y(p.lo)}`)).join(" ");
    const line = pts.map((p) => `${x(p.m)},${y(p.mean)}`).join(" ");
    const label = "Horizon: P(any restriction) within a number of months, mean with its 90% band";
    const yTicks = [0, maxP / 2, maxP].map((p) => s("text", {x: left - 4, y: y(p) + 4, "text-anchor": "end", "font-size": 11, fill: "currentColor"}, pct(p)));
    const xTicks = pts.filter((_, i) => i % Math.ceil(pts.length / 6) === 0 || i === pts.length - 1)
      .map((p) => s("text", {x: x(p.m), y: height - 14, "text-anchor": "middle", "font-size": 11, fill: "currentColor"}, String(p.m)));
    const chart = s("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label},
      s("title", {}, label),
      s("polygon", {points: band, fill: "#21918c", "fill-opacity": 0.3}),
      s("polyline", {points: line, fill: "none", stroke: "#3b528b", "stroke-width": 2}),
      s("line", {x1: left, x2: width - right, y1: y(0), y2: y(0), stroke: "currentColor"}),
      yTicks, xTicks,
      s("text", {x: (left + width) / 2, y: height - 1, "text-anchor": "middle", "font-size": 11, fill: "currentColor"}, "months"));
    const table = h("details", {}, h("summary", {text: "The curve's numbers"}), h("table", {class: "numbers"},
      h("thead", {}, h("tr", {}, ["months", "P(any restriction)", "90% band", "expected triggers"].map((c) => h("th", {scope: "col", text: c})))),
      h("tbody", {}, pts.map((p) => h("tr", {}, h("th", {scope: "row", text: String(p.m)}), h("td", {text: pct(p.mean)}),
        h("td", {text: `${pct(p.lo)} to ${pct(p.hi)}`}), h("td", {text: num(p.triggers)}))))));
    const last = pts[pts.length - 1];
    const perTrigger = answer.per_trigger && answer.per_trigger.any_restriction;
    const scope = horizonScope(scenario);
    const said = h("p", {class: "help", text:
      `${scope[0].toUpperCase()}${scope.slice(1)}: ` +
      `${pct(last.mean)} within ${last.m} months (90% band ${pct(last.lo)} to ${pct(last.hi)}), ` +
      `${num(last.triggers)} triggers expected to put the partner at stake` +
      (perTrigger ? `; after one such trigger, ${pct(meanOf(perTrigger))}.` : ".")});
    target.replaceChildren(chart, said, table);
  } catch (err) {
    if (latest()) failed(["cell-horizon"], err);
  }
}

// The evidence: the explanation's episodes (closest first: this cell, the partner's other
// types, its bloc's partners on this type) when the server explains; else the cell's own
// coded episodes (GET /v1/episodes).
async function drawEvidence(f, base, latest) {
  const target = $("cell-evidence");
  const evidence = f.evidence;
  let episodes, note;
  const parts = [];
  if (evidence && Array.isArray(evidence.episodes)) {
    episodes = evidence.episodes;
    note = evidence.note;
    if (evidence.counts) {
      const restricted = evidence.restricted || {};
      parts.push(h("ul", {class: "counts"}, Object.entries(evidence.counts).map(([k, n]) =>
        h("li", {text: `${k.replaceAll("_", " ")}: ${n} episodes` +
          (restricted[k] !== undefined ? `, ${restricted[k]} with a restriction` : "")}))));
    }
    if (evidence.store && evidence.store.note) parts.push(h("p", {class: "help", text: evidence.store.note}));
  } else {
    try {
      const page = await api("/v1/episodes", {...base, limit: 100});
      if (!latest()) return;
      episodes = page.episodes;
      note = `The ${page.total} episodes coded for this partner and type` +
        (page.total > page.episodes.length ? ` (the first ${page.episodes.length})` : "") +
        "; this server does not list the other episodes the forecast pools.";
    } catch (err) { if (latest()) failed(["cell-evidence"], err); return; }
  }
  const levels = Object.fromEntries(state.vocab.levels.map((l) => [String(l.code), l.name]));
  const items = episodes.map((e) => h("li", {},
    h("strong", {text: `${e.trigger_date || ""} ${e.trigger_id || ""}`}),
    ` ${e.partner || ""} ${e.intel_type || ""} \u00b7 level ${e.level}` +
      `${levels[String(e.level)] ? ` (${levels[String(e.level)]})` : ""}` +
      `${e.trigger_type ? ` \u00b7 ${e.trigger_type}, severity ${e.severity}, alignment ${e.alignment}` : ""}` +
      `${e.confidence ? ` \u00b7 ${e.confidence} confidence` : ""}` +
      `${e.relation ? ` \u00b7 ${e.relation}` : ""}`,
    sourcesList(e.sources)));
  target.replaceChildren(...[h("p", {class: "help", text: note || ""}), ...parts,
    items.length ? h("ul", {class: "episodes"}, items)
      : h("p", {text: "No episode is listed: the forecast rests on the partner's bloc, its other types and the trigger's scenario."})]);
}

/* ---------- comparison ---------- */

async function showComparison() {
  const form = $("compare-form");
  const params = Object.fromEntries(new FormData(form).entries());
  const target = $("compare-result");
  target.replaceChildren(h("p", {class: "help", text: "Comparing\u2026"}));
  const latest = ticket("compare");
  try {
    const answer = await api("/v1/forecasts/compare", params);
    if (!latest()) return;
    const rows = answer.comparisons.slice().sort((x, y) => y.difference.mean - x.difference.mean);
    const names = Object.fromEntries(state.vocab.partners.map((p) => [p.code, p.name]));
    const chartRows = rows.slice(0, 40);
    const width = 520, rowH = 20, left = 150, right = 16, height = chartRows.length * rowH + 30;
    const lo = Math.min(0, ...chartRows.map((r) => r.difference.ci90[0]));
    const hi = Math.max(0, ...chartRows.map((r) => r.difference.ci90[1]));
    const x = (v) => left + (v - lo) / ((hi - lo) || 1) * (width - left - right);
    const label = "Difference B minus A per cell: dot the mean, bar the 90% interval";
    const chart = s("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart wide", role: "img", "aria-label": label},
      s("title", {}, label),
      s("line", {x1: x(0), x2: x(0), y1: 0, y2: height - 20, stroke: "currentColor"}),
      s("text", {x: x(lo), y: height - 4, "font-size": 11, fill: "currentColor"}, signedPct(lo)),
      s("text", {x: x(hi), y: height - 4, "text-anchor": "end", "font-size": 11, fill: "currentColor"}, signedPct(hi)),
      chartRows.map((r, i) => {
        const y = i * rowH + rowH / 2;
        return s("g", {},
          s("text", {x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "currentColor"}, `${r.partner} ${r.intel_type}`),
          s("line", {x1: x(r.difference.ci90[0]), x2: x(r.difference.ci90[1]), y1: y, y2: y, stroke: "#3b528b", "stroke-width": 2}),
          s("line", {x1: x(r.difference.ci50[0]), x2: x(r.difference.ci50[1]), y1: y, y2: y, stroke: "#3b528b", "stroke-width": 6}),
          s("circle", {cx: x(r.difference.mean), cy: y, r: 4, fill: "#fde725", stroke: "#000"}));
      }));
    const table = h("table", {class: "numbers compare", id: "compare-table"},
      h("caption", {}, `A: ${describe(answer.scenario_a)}. B: ${describe(answer.scenario_b)}. Model ${answer.model.version}.`),
      h("thead", {}, h("tr", {}, ["cell", "P(any) under A", "P(any) under B", "B \u2212 A", "90% interval of B \u2212 A", "P(B > A)"]
        .map((c) => h("th", {scope: "col", text: c})))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("th", {scope: "row", text: `${names[r.partner] || r.partner} \u00b7 ${r.intel_type}`}),
        h("td", {text: `${pct(r.a.any_restriction.mean)} (${interval(r.a.any_restriction.ci90)})`}),
        h("td", {text: `${pct(r.b.any_restriction.mean)} (${interval(r.b.any_restriction.ci90)})`}),
        h("td", {text: signedPct(r.difference.mean)}),
        h("td", {text: `${signedPct(r.difference.ci90[0])} to ${signedPct(r.difference.ci90[1])}`}),
        h("td", {text: pct(r.difference.prob_positive)})))));
    target.replaceChildren(...[chart, rows.length > chartRows.length
      ? h("p", {class: "help", text: `The chart shows the ${chartRows.length} largest differences; the table has all ${rows.length}.`}) : null,
    h("div", {class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Comparison table"}, table)].filter(Boolean));
    setStatus(`Compared ${rows.length} cells.`);
  } catch (err) {
    if (latest()) target.replaceChildren(h("p", {class: "error", text: `The comparison failed: ${err.message}`}));
  }
}

/* ---------- model health ---------- */

async function showHealth() {
  state.healthLoaded = true;
  const parts = [
    ["health-model", healthModel], ["health-diagnostics", healthDiagnostics],
    ["health-evaluation", healthEvaluation], ["health-refits", healthRefits],
  ];
  for (const [id] of parts) $(id).replaceChildren(h("p", {class: "help", text: "Loading\u2026"}));
  drawPlotLinks();
  await Promise.all(parts.map(([id, fn]) => fn().catch((err) => failed([id], err))));
}

function age(iso) {
  const hours = (Date.now() - Date.parse(iso)) / 3.6e6;
  if (!(hours >= 0)) return "?";
  return hours < 1 ? `${Math.round(hours * 60)} min` : hours < 48 ? `${Math.round(hours)} h` : `${Math.round(hours / 24)} days`;
}

function verdictBadge(verdict) {
  return h("span", {class: `verdict verdict-${verdict}`, text: verdict});
}

async function healthModel() {
  const list = await api("/v1/models");
  const current = list.models.find((m) => m.current);
  if (!current) { $("health-model").replaceChildren(h("p", {text: "No version is current."})); return; }
  $("health-model").replaceChildren(h("dl", {class: "facts"},
    h("dt", {text: "current version"}), h("dd", {text: current.version}),
    h("dt", {text: "fitted"}), h("dd", {text: `${current.fitted_at} (${age(current.fitted_at)} ago)`}),
    h("dt", {text: "episodes"}), h("dd", {text: String(current.episodes)}),
    h("dt", {text: "verdict"}), h("dd", {}, verdictBadge(current.verdict),
      current.reasons.length ? ` ${current.reasons.join("; ")}` : "")));
  $("health-versions").replaceChildren(h("div", {class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Stored versions"},
    h("table", {class: "numbers"},
      h("thead", {}, h("tr", {}, ["version", "fitted", "episodes", "verdict", "reasons"].map((c) => h("th", {scope: "col", text: c})))),
      h("tbody", {}, list.models.map((m) => h("tr", {class: m.current ? "current" : null},
        h("th", {scope: "row"}, m.version, m.current ? " (current)" : ""), h("td", {text: m.fitted_at}),
        h("td", {text: String(m.episodes)}), h("td", {}, verdictBadge(m.verdict)), h("td", {text: m.reasons.join("; ")})))))));
}

async function healthDiagnostics() {
  const d = await api("/v1/models/current/diagnostics");
  const scalars = Object.entries(d.diagnostics || {}).filter(([, v]) => v === null || typeof v !== "object");
  const nested = Object.entries(d.diagnostics || {}).filter(([, v]) => v !== null && typeof v === "object");
  $("health-diagnostics").replaceChildren(
    h("p", {}, "Verdict of the gate: ", verdictBadge(d.verdict), d.reasons.length ? ` (${d.reasons.join("; ")})` : " (every check passed)"),
    h("dl", {class: "facts"}, scalars.map(([k, v]) => [h("dt", {text: k.replaceAll("_", " ")}), h("dd", {text: num(v, 4)})])),
    nested.length ? h("details", {}, h("summary", {text: "More diagnostics"}),
      h("dl", {class: "facts"}, nested.map(([k, v]) => [h("dt", {text: k.replaceAll("_", " ")}),
        h("dd", {}, flat(v))]))) : null);
}

function flat(value) {
  if (Array.isArray(value)) return value.map((v) => (typeof v === "object" ? JSON.stringify(v) : num(v))).join(", ");
  return Object.entries(value).map(([k, v]) => `${k}: ${v !== null && typeof v === "object" ? JSON.stringify(v) : num(v, 4)}`).join("; ");
}

async function healthEvaluation() {
  let doc;
  try {
    doc = await api("/v1/models/current/evaluation");
  } catch (err) {
    if (err.status === 404) {
      $("health-evaluation").replaceChildren(h("p", {},
        "No evaluation is stored for this version: run ", h("code", {text: "forecast backtest"}), "."));
      return;
    }
    throw err;
  }
  const out = [];
  const bt = doc.backtest;
  if (bt && bt.forecasters) {
    const names = Object.keys(bt.forecasters);
    const scores = bt.scores || Object.keys(bt.forecasters[names[0]].scores);
    out.push(h("div", {class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Backtest scores"},
      h("table", {class: "numbers"},
        h("caption", {text: `Backtest: mean scores over ${bt.n_episodes} held-out episodes in ${bt.n_folds} folds (losses: lower is better)`}),
        h("thead", {}, h("tr", {}, h("th", {scope: "col", text: "forecaster"}), scores.map((c) => h("th", {scope: "col", text: c})))),
        h("tbody", {}, names.map((n) => h("tr", {class: n === bt.model ? "current" : null},
          h("th", {scope: "row", text: n === bt.model ? `${n} (the model)` : n}),
          scores.map((c) => h("td", {text: num(bt.forecasters[n].scores[c], 4)}))))))));
    const comps = Object.entries(bt.comparisons || {});
    if (comps.length) {
      out.push(h("div", {class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Model minus baselines"},
        h("table", {class: "numbers"},
          h("caption", {text: "The model minus each baseline, with 90% trigger-clustered bootstrap intervals (below 0: the model is better)"}),
          h("thead", {}, h("tr", {}, h("th", {scope: "col", text: "baseline"}), scores.map((c) => h("th", {scope: "col", text: c})))),
          h("tbody", {}, comps.map(([base, byScore]) => h("tr", {}, h("th", {scope: "row", text: base}),
            scores.map((c) => { const d = byScore[c]; return h("td", {text: d ? `${num(d.mean, 3)} [${num(d.lo, 3)}, ${num(d.hi, 3)}]` : "n/a"}); })))))));
    }
  }
  for (const key of ["sbc", "sensitivity", "comparison"]) {
    if (doc[key]) out.push(h("p", {}, `${key}: stored`, doc[key].created_at ? ` (${doc[key].created_at})` : "", "."));
  }
  if (doc.plots && doc.plots.length) {
    out.push(h("ul", {class: "plots"}, doc.plots.map((name) => plotLink(`/v1/models/${doc.version}/evaluation/plots/${name}.png`, `evaluation: ${name}`))));
  }
  $("health-evaluation").replaceChildren(...(out.length ? out : [h("p", {text: "The stored evaluation holds no backtest."})]));
}

async function healthRefits() {
  const r = await api("/v1/refits", {limit: 20});
  const stale = r.stale
    ? h("p", {class: "stale"}, h("strong", {text: "Stale"}), ` since ${r.stale_since || "?"}: ${r.stale_reasons.join("; ")}`)
    : h("p", {}, "Up to date: no change since the current version was fitted.");
  const jobs = [...r.running, ...r.queued, ...r.history.filter((j) => !["queued", "running"].includes(j.status))];
  const seen = new Set();
  const unique = jobs.filter((j) => !seen.has(j.id) && seen.add(j.id));
  const cols = ["id", "status", "reason", "requested_at", "finished_at", "version", "verdict"];
  $("health-refits").replaceChildren(stale, h("p", {}, `${r.queued.length} queued, ${r.running.length} running.`),
    unique.length ? h("div", {class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Refit history"},
      h("table", {class: "numbers"}, h("caption", {text: "Refits, newest first"}),
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", {scope: "col", text: c.replace("_", " ")})))),
        h("tbody", {}, unique.map((j) => h("tr", {}, cols.map((c, i) => (i === 0
          ? h("th", {scope: "row", text: String(j[c])}) : h("td", {text: j[c] === null || j[c] === undefined ? "" : String(j[c])})))))))) : h("p", {text: "No refit recorded."}));
}

function plotLink(url, caption) {
  return h("li", {}, h("a", {href: url, onclick: (ev) => { ev.preventDefault(); showPlot(url, caption); }}, caption));
}

function drawPlotLinks() {
  $("health-plots").replaceChildren(...PLOTS.map((name) => plotLink(`/v1/models/current/plots/${name}.png`, name.replace("_", " "))));
}

// Plots are fetched (with the token when reads are closed) and shown as blob: URLs.
async function showPlot(url, caption) {
  const fig = $("plot-figure");
  fig.hidden = false;
  $("plot-caption").textContent = `Loading ${caption}\u2026`;
  try {
    const blob = await (await request(url, null, "image/png")).blob();
    if (state.plotUrl) URL.revokeObjectURL(state.plotUrl);
    state.plotUrl = URL.createObjectURL(blob);
    const img = $("plot-image");
    img.src = state.plotUrl;
    img.alt = `Diagnostic plot: ${caption}`;
    $("plot-caption").textContent = `${caption} (${url})`;
  } catch (err) {
    $("plot-caption").textContent = `${caption}: ${err.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("risk-map").addEventListener("keydown", mapKeys);
  start();
});
