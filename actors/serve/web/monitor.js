// Manta's dashboard, monitoring: the alerts feed (live, by Server-Sent Events) and the watches.
// Loaded after app.js, whose helpers ($, el, api, state, showSource, ...) it uses.
"use strict";

const MAX_ALERTS = 300;  // alerts kept in the feed: the page of a long-running service stays light

// -- alerts: the history, then each new one as it is raised (EventSource sends the cookie) --------

function addAlert(a) {
  if (state.alertIds.has(a.id)) return;
  state.alertIds.add(a.id);
  state.alerts.push(a);
  const when = a.fired_wall ? new Date(a.fired_wall * 1000).toLocaleTimeString() : "";
  const hook = a.webhook && a.webhook.state !== "none" ? `webhook ${a.webhook.state}` : "";
  $("alerts").prepend(el("li", {class: "alert", dataset: {id: String(a.id)}},
    el("div", {}, el("strong", {text: a.watch_text}), " ", el("span", {class: "note", text: when})),
    el("div", {}, el("button", {type: "button", class: "citation", text: `${a.stream} ${span(a.start, a.end)}`,
                                "aria-label": `Show ${a.stream} at ${clock(a.start)}`,
                                onclick: () => showSource(a)}),
       el("span", {class: "text", text: ` ${a.modality}: “${a.quote}”`})),
    el("div", {class: "note", text: [`score ${Number(a.score).toFixed(2)}`, hook].filter(Boolean).join(" · ")})));
  addAlertToTimeline(a);
  while (state.alerts.length > MAX_ALERTS) {
    const old = state.alerts.shift();
    state.alertIds.delete(old.id);
    const li = $("alerts").querySelector(`li[data-id="${old.id}"]`);
    if (li) li.remove();
  }
}

async function startAlerts() {
  const note = $("alerts-state");
  let since = 0;
  try {
    const data = await api("/v1/alerts?limit=100");
    data.alerts.forEach(addAlert);
    since = data.last_id || 0;
  } catch (e) {
    note.textContent = e.status === 404 ? "Alerts are not available on this service." : `Cannot read alerts: ${e.message}`;
    return;
  }
  note.textContent = state.alerts.length ? "" : "No alerts yet; new ones appear here as they are raised.";
  const source = new EventSource(`/v1/alerts/stream?since=${since}`);
  source.addEventListener("alert", (e) => {
    note.textContent = "";
    addAlert(JSON.parse(e.data));
  });
  source.addEventListener("open", () => { if (note.dataset.down) { note.textContent = ""; delete note.dataset.down; } });
  source.addEventListener("error", () => {  // EventSource reconnects by itself, resuming after the last id
    note.dataset.down = "1";
    note.textContent = "The alerts feed was interrupted; reconnecting…";
  });
}

// -- watches --------------------------------------------------------------------------------------

async function loadWatches() {
  const list = $("watches");
  try {
    const data = await api("/v1/watches");
    list.replaceChildren(...data.watches.map((w) => el("li", {},
      el("span", {class: "text", text: w.text}), " ",
      el("span", {class: "note", text: `${w.modality} · ${w.streams && w.streams.length ? w.streams.join(", ") : "every stream"}` +
                                       ` · ${w.alerts ?? 0} alerts`}), " ",
      el("button", {type: "button", class: "quiet", text: "Remove", "aria-label": `Remove the watch “${w.text}”`,
                    onclick: () => removeWatch(w)}))));
    if (!data.watches.length) list.replaceChildren(el("li", {class: "note", text: "No watches."}));
  } catch (e) {
    $("watch-msg").textContent = e.status === 404 ? "Watches are not available on this service." : `Cannot list watches: ${e.message}`;
  }
}

async function removeWatch(w) {
  try {
    await api(`/v1/watches/${encodeURIComponent(w.id)}`, {method: "DELETE"});
    $("watch-msg").textContent = `Removed the watch “${w.text}”.`;
  } catch (e) {
    $("watch-msg").textContent = `Could not remove it: ${e.message}`;
  }
  loadWatches();
}

$("watch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("watch-text").value.trim();
  const streams = $("watch-streams").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    await api("/v1/watches", {method: "POST", json: {text, streams: streams.length ? streams : null,
                                                      modality: $("watch-modality").value}});
    $("watch-msg").textContent = `Watching for “${text}”.`;
    $("watch-text").value = "";
  } catch (e) {
    $("watch-msg").textContent = `Could not add the watch: ${e.message}`;
  }
  loadWatches();
});

startAlerts();
loadWatches();
