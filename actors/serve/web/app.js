// Manta's dashboard: plain JavaScript over the JSON API, no build step and nothing from elsewhere.
// Every value from the API reaches the page through textContent, never as HTML.
"use strict";

const POLL_MS = 2000;  // the streams table
const TIMELINE_MS = 3000;  // the chosen stream's timeline, while it ingests
const FRAME_EVERY_S = 5;  // one frame per this many seconds in the timeline, besides every cut
const ACTIVE = new Set(["starting", "pending", "connecting", "waiting", "ingesting", "reconnecting", "restoring"]);

const $ = (id) => document.getElementById(id);
const state = {streams: new Map(), selected: null, timelineKeys: new Map(), timelineTimer: null,
               lastFrameShown: -Infinity, alerts: [], alertIds: new Set()};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function clock(t) {  // media seconds as m:ss.s (h:mm:ss.s past an hour), as the API's answers write it
  if (t === null || t === undefined || !isFinite(t)) return "–";
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = (t % 60).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
const span = (a, b) => (b !== undefined && b !== null && b > a ? `${clock(a)}–${clock(b)}` : clock(a));

function detail(body, status) {  // a FastAPI error as one sentence
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return `HTTP ${status}`;
}

async function api(path, options = {}) {
  const init = {...options, headers: {"Accept": "application/json", ...(options.headers || {})}};
  if (options.json !== undefined) {
    init.body = JSON.stringify(options.json);
    init.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, init);
  if (r.status === 401) {  // the cookie went (the token changed): back to the login form
    window.location.assign("/ui");
    throw new Error("signed out");
  }
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const err = new Error(detail(body, r.status));
    err.status = r.status;
    throw err;
  }
  return body;
}

const thumbURL = (id, t) => `/v1/streams/${encodeURIComponent(id)}/thumbnail?at=${Math.max(0, t).toFixed(2)}`;
const mediaURL = (id) => `/v1/streams/${encodeURIComponent(id)}/media`;

// -- streams --------------------------------------------------------------------------------------

function quality(s) {
  if (!s.degraded) return "full";
  const why = s.degradation && s.degradation.reason ? `: ${s.degradation.reason}` : "";
  return `reduced (level ${s.degraded})${why}`;
}

function renderStreams(list, total) {
  const body = $("streams").tBodies[0];
  const rows = list.map((s) => {
    const chosen = s.id === state.selected;
    const pick = el("button", {type: "button", class: "link", "aria-pressed": String(chosen),
                               text: s.name && s.name !== s.id ? `${s.name} (${s.id})` : s.id,
                               onclick: () => selectStream(s.id)});
    return el("tr", {class: chosen ? "chosen" : null, "aria-current": chosen ? "true" : null, dataset: {id: s.id}},
      el("th", {scope: "row"}, pick, s.live ? el("span", {class: "badge live", text: "live"}) : null),
      el("td", {class: `state ${s.state}`, text: s.state, title: s.last_error || null}),
      el("td", {class: "num", text: clock(s.media_seconds)}),
      el("td", {class: "num", text: s.lag_s !== undefined ? `${s.lag_s.toFixed(1)} s` : "–"}),
      el("td", {class: "num", text: s.rtf !== undefined ? s.rtf.toFixed(2) : "–"}),
      el("td", {text: s.degraded !== undefined ? quality(s) : "–"}));
  });
  const focused = document.activeElement && body.contains(document.activeElement) ?
    document.activeElement.closest("tr").dataset.id : null;
  body.replaceChildren(...rows);
  if (focused) {  // a keyboard user keeps their place across the refresh
    const again = [...body.rows].find((r) => r.dataset.id === focused);
    if (again) again.querySelector("button").focus();
  }
  $("streams-empty").hidden = list.length > 0;
  $("totals").textContent = total ? `${total.streams} streams · ${total.ingesting} ingesting · ` +
    (total.waiting ? `${total.waiting} waiting for a sender · ` : "") +
    `RTF ${total.rtf.toFixed(2)} · worst lag ${total.max_lag_s.toFixed(1)} s` +
    (total.failed ? ` · ${total.failed} failed` : "") : "";
  const scope = $("ask-scope"), keep = scope.value, ids = list.map((s) => s.id).join("\n");
  if (scope.dataset.ids !== ids) {  // rebuilt only when streams come or go: an open list stays open
    scope.dataset.ids = ids;
    scope.replaceChildren(el("option", {value: "", text: "every stream"}),
      ...list.map((s) => el("option", {value: s.id, text: s.id})));
    scope.value = list.some((s) => s.id === keep) ? keep : "";
  }
}

async function pollStreams() {
  try {
    const data = await api("/v1/streams");
    state.streams = new Map(data.streams.map((s) => [s.id, s]));
    renderStreams(data.streams, data.total);
    $("streams-error").hidden = true;
    if (state.selected && state.streams.has(state.selected)) {
      renderGaps(state.streams.get(state.selected));
      renderHeard(state.streams.get(state.selected));
    }
  } catch (e) {
    $("streams-error").textContent = `Cannot list the streams: ${e.message}`;
    $("streams-error").hidden = false;
  } finally {
    setTimeout(pollStreams, POLL_MS);
  }
}

// -- the chosen stream: player and timeline -------------------------------------------------------

function selectStream(id) {
  if (state.selected === id) return;
  state.selected = id;
  state.timelineKeys = new Map();
  state.lastFrameShown = -Infinity;
  $("timeline").replaceChildren();
  $("source-frames").hidden = true;
  $("detail-name").textContent = id;
  $("detail-hint").hidden = true;
  $("filters").hidden = false;
  for (const row of $("streams").tBodies[0].rows) {
    const chosen = row.dataset.id === id;
    row.classList.toggle("chosen", chosen);
    row.querySelector("button").setAttribute("aria-pressed", String(chosen));
  }
  const s = state.streams.get(id);
  const player = $("player"), note = $("player-note");
  if (s && !s.live) {
    player.src = mediaURL(id);
    player.hidden = false;
    note.hidden = true;
  } else {
    player.removeAttribute("src");
    player.load();
    player.hidden = true;
    note.textContent = "A live stream: sources show its nearest kept frames.";
    note.hidden = false;
  }
  clearTimeout(state.timelineTimer);
  refreshTimeline();
}

$("player").addEventListener("error", () => {
  const note = $("player-note");
  note.textContent = "This recording cannot be played here (not a local file, or a format the browser lacks).";
  note.hidden = false;
});

function seekable() { return !$("player").hidden && $("player").getAttribute("src"); }

function timeButton(stream, t0, t1) {
  return el("button", {type: "button", class: "time", text: span(t0, t1),
                       "aria-label": `Show ${stream} at ${clock(t0)}`,
                       onclick: () => showSource({stream, start: t0, end: t1 ?? t0})});
}

function upsert(key, t, kind, build) {
  // Keyed, in time order: a refresh adds what is new and leaves the rest (focus, scroll, images).
  const list = $("timeline");
  const old = state.timelineKeys.get(key);
  const item = build();
  item.dataset.t = String(t);
  item.dataset.kind = kind;
  item.hidden = !filterOn(kind);
  if (old) { old.replaceWith(item); state.timelineKeys.set(key, item); return; }
  state.timelineKeys.set(key, item);
  let next = null;
  for (let i = list.children.length - 1; i >= 0; i--) {  // new items are usually the latest
    if (Number(list.children[i].dataset.t) <= t) { next = list.children[i].nextSibling; break; }
    next = list.children[i];
  }
  list.insertBefore(item, next);
}

function filterOn(kind) {
  const box = $("filters").querySelector(`input[value="${kind}"]`);
  return !box || box.checked;
}
$("filters").addEventListener("change", () => {
  for (const li of $("timeline").children) li.hidden = !filterOn(li.dataset.kind);
});

function entry(id, t0, t1, badge, badgeClass, ...content) {
  return el("li", {class: `entry ${badgeClass}`}, timeButton(id, t0, t1),
            el("span", {class: `badge ${badgeClass}`, text: badge}), ...content);
}

async function refreshTimeline() {
  const id = state.selected;
  if (!id) return;
  const q = (p) => `/v1/streams/${encodeURIComponent(id)}/${p}?limit=1000`;
  try {
    const [segs, shown, frames] = await Promise.all([api(q("segments")), api(q("shown")), api(q("frames"))]);
    if (state.selected !== id) return;
    for (const s of segs.segments) {
      if (!s.text || !s.text.trim()) continue;
      upsert(`seg:${s.seq}`, s.start, "said",
             // A stream with speaker labels says whose voice it is (S1, S2, … in order of first appearance).
             () => entry(id, s.start, s.end, s.speaker ? `said · ${s.speaker}` : "said", "said",
                         el("span", {class: "text", text: s.text.trim()})));
    }
    for (const it of shown.shown) {
      upsert(`shown:${it.id}`, it.start, "shown",
             () => entry(id, it.start, it.end, it.kind === "subtitle" ? "subtitle" : "on screen", "shown",
                         el("span", {class: "text", text: it.text})));
    }
    for (const f of frames.frames) {
      const cut = f.cut !== null && f.cut !== undefined;
      if (!cut && f.t - state.lastFrameShown < FRAME_EVERY_S && !state.timelineKeys.has(`frame:${f.t}`)) continue;
      state.lastFrameShown = Math.max(state.lastFrameShown, f.t);
      const labels = (f.labels || []).slice(0, 3).map((l) => l.name).join(", ");
      upsert(`frame:${f.t}`, f.t, "seen", () => entry(id, f.t, null, cut ? "shot cut" : "frame", cut ? "seen cut" : "seen",
        el("img", {src: thumbURL(id, f.t), alt: labels ? `Frame at ${clock(f.t)}: ${labels}` : `Frame at ${clock(f.t)}`,
                   loading: "lazy", width: "160", onerror: (e) => { e.target.hidden = true; }}),
        el("span", {class: "text", text: labels})));
    }
    const s = state.streams.get(id);
    if (s) { renderGaps(s); renderHeard(s); }
    for (const a of state.alerts) if (a.stream === id) addAlertToTimeline(a);
  } catch (e) {
    upsert("error", -1, "error", () => el("li", {class: "error", role: "alert", text: `Cannot read the timeline: ${e.message}`}));
  }
  const s = state.streams.get(id);
  if (!s || ACTIVE.has(s.state)) state.timelineTimer = setTimeout(refreshTimeline, TIMELINE_MS);
}

function renderHeard(s) {
  // What a live stream just said, before it is final: one entry, replaced as it grows and removed
  // once the committed transcript (a "said" entry) covers it.
  const old = state.timelineKeys.get("provisional");
  const p = s.provisional;
  if (!p || !p.text) {
    if (old) { old.remove(); state.timelineKeys.delete("provisional"); }
    return;
  }
  upsert("provisional", p.start, "said", () => entry(s.id, p.start, p.end, "just said · provisional", "said provisional",
    el("span", {class: "text", text: p.text, title: "Heard by the fast recogniser; replaced by the final transcript within seconds"})));
}

function renderGaps(s) {
  for (const g of s.gaps || []) {
    const lost = Math.max(0, g.wall_end - g.wall_start);
    upsert(`gap:${g.media_t}:${g.wall_start}`, g.media_t, "gap", () => entry(s.id, g.media_t, null, "gap", "gap",
      el("span", {class: "text", text: `${lost.toFixed(1)} s without the source: ${g.reason}`})));
  }
}

function addAlertToTimeline(a) {
  if (a.stream !== state.selected) return;
  upsert(`alert:${a.id}`, a.start, "alert", () => entry(a.stream, a.start, a.end, "alert", "alert",
    el("span", {class: "text", text: `${a.watch_text}: “${a.quote}”`})));
}

// -- sources: play a recording from the cited moment, or show a live stream's nearest frames -------

async function showSource(c) {
  selectStream(c.stream);
  const s = state.streams.get(c.stream);
  if (s && !s.live) {
    const player = $("player");
    if (player.error) player.src = mediaURL(c.stream);  // a failed read leaves the element dead: load it again
    const seek = () => {
      player.currentTime = c.start;
      player.play().catch(() => {});  // a browser may refuse to play without a gesture: it still seeks
    };
    if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek, {once: true});
    player.currentTime = c.start;  // before metadata too: the element starts there once it loads
    player.scrollIntoView({block: "nearest"});
    return;
  }
  const box = $("source-frames");
  const times = [...new Set([c.start, (c.start + c.end) / 2, c.end].map((t) => Math.round(t * 10) / 10))];
  box.replaceChildren(...times.map((t) => el("figure", {},
    el("img", {src: thumbURL(c.stream, t), alt: `Nearest kept frame of ${c.stream} to ${clock(t)}`, width: "200",
               onerror: (e) => { e.target.replaceWith(el("span", {class: "note", text: "no frame kept"})); }}),
    el("figcaption", {text: `${c.stream} ${clock(t)}`}))));
  box.hidden = false;
  box.scrollIntoView({block: "nearest"});
}

// -- asking: the answer streams in as Server-Sent Events -----------------------------------------

async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true}).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield [event, JSON.parse(data)];
    }
  }
}

function renderCitations(result) {
  const list = $("citations");
  const quotes = result.evidence || [];
  list.replaceChildren(...(result.citations || []).map((c) => {
    const ev = quotes.find((e) => e.stream === c.stream && e.start < c.end + 0.01 && e.end > c.start - 0.01);
    return el("li", {}, el("button", {type: "button", class: "citation", text: `${c.stream} ${span(c.start, c.end)}`,
                                      "aria-label": `Play ${c.stream} from ${clock(c.start)}`,
                                      onclick: () => showSource(c)}),
              ev ? el("span", {class: "text", text: ` ${ev.provisional ? "just said (provisional)" : ev.modality}: “${ev.text}”`}) : null);
  }));
  $("citations-h").hidden = !list.children.length;
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const answer = $("answer"), button = $("ask-button");
  const scope = $("ask-scope").value;
  answer.textContent = "";
  answer.classList.remove("error");
  answer.setAttribute("aria-busy", "true");
  $("citations").replaceChildren();
  $("citations-h").hidden = true;
  $("timings").textContent = "Searching…";
  button.disabled = true;
  try {
    const r = await fetch("/v1/query", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({question, stream: true, streams: scope ? [scope] : null})});
    if (r.status === 401) { window.location.assign("/ui"); return; }
    if (!r.ok) throw new Error(detail(await r.json().catch(() => null), r.status));
    let written = "";
    for await (const [kind, data] of events(r)) {
      if (kind === "evidence") $("timings").textContent = `Found ${data.evidence.length} pieces of evidence; writing…`;
      else if (kind === "token") { written += data.text; answer.textContent = written; }
      else if (kind === "done") {
        answer.textContent = data.answer;
        renderCitations(data);
        const t = data.timings || {};
        $("timings").textContent = [t.total_ms !== undefined ? `${Math.round(t.total_ms)} ms` : "", data.model || "",
                                    ...(data.warnings || [])].filter(Boolean).join(" · ");
      }
    }
  } catch (e) {
    answer.textContent = `Could not answer: ${e.message}`;
    answer.classList.add("error");
    $("timings").textContent = "";
  } finally {
    answer.setAttribute("aria-busy", "false");
    button.disabled = false;
  }
});

pollStreams();  // alerts and watches start in monitor.js, loaded after this file
