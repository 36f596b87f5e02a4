// Ronda Central console: plain JavaScript, no libraries, no CDN. Data is only ever set as
// text (textContent), never as HTML, so nothing a node publishes can inject markup.
"use strict";
const ronda = window.ronda = { beeps: 0, sounding: false, alarms: [], nodes: [], me: null,
  firstSeen: {} };  // alarm_id -> when this page first showed it (ms): the bench reads it

function el(tag, attrs, ...children) {
  const ns = ["svg", "circle", "text", "image", "g", "polyline", "title", "a", "rect", "line"]
    .includes(tag) && attrs && attrs.svg ? "http://www.w3.org/2000/svg" : null;
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "svg" || v === null || v === undefined) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const $ = (id) => document.getElementById(id);
const when = (ts) => ts ? new Date(ts * 1000).toLocaleString() : "—";
const ago = (ts) => {
  if (!ts) return "never";
  const s = Date.now() / 1000 - ts;
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
};

async function get(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (r.status === 401) { location.href = "/login"; throw new Error("login"); }
  return r.json();
}
async function post(url, body) {
  const r = await fetch(url, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Ronda": "1" }, body: JSON.stringify(body || {}) });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

// -- sound and flash: a new (unclaimed) alarm beeps every second until claimed ------------------
let audio = null, beeper = null;
function beep() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = 880; gain.gain.value = 0.2;
    osc.connect(gain); gain.connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.35);
    ronda.beeps += 1;
  } catch (e) { /* no audio device: the flash still shows */ }
}
function setAlert(on) {
  document.body.classList.toggle("alarm-flash", on);
  ronda.sounding = on;
  if (on && !beeper) { beep(); beeper = setInterval(beep, 1000); }
  if (!on && beeper) { clearInterval(beeper); beeper = null; }
}

// -- alarm queue ---------------------------------------------------------------------------------
const canOperate = () => ronda.me && !ronda.me.agency && ["operator", "admin"].includes(ronda.me.role);

function alarmCard(a) {
  const li = el("li", { class: `alarm ${a.state}`, id: `alarm-${a.id}`, "data-node": a.node });
  li.append(el("div", { class: "alarm-head" },
    el("span", { class: "kind" }, a.kind.toUpperCase()), " ",
    el("a", { href: `/node/${encodeURIComponent(a.node)}` }, a.node_name), " ",
    el("span", { class: "muted" }, `${when(a.raised_ts)} · ${a.source || ""}`)));
  const facts = [`state: ${a.state}`, `at the post: ${a.post_phase}`];
  if (a.presses > 1) facts.push(`${a.presses} presses`);
  if (a.siren) facts.push(`siren: ${a.siren}`);
  if (a.claimed_by) facts.push(`claimed by ${a.claimed_by}`);
  if (a.acked_by) facts.push(`acknowledged by ${a.acked_by}`);
  li.append(el("div", { class: "facts", "data-field": "facts" }, facts.join(" · ")));
  if (a.last_command) {
    const c = a.last_command;
    const text = c.ok === null || c.ok === undefined ? `${c.action}: waiting for the post…`
      : `post replied to ${c.action}: ${c.ok ? "ok" : "failed"} — ${c.message}`;
    li.append(el("div", { class: "reply", "data-field": "reply" }, text));
  }
  for (const n of a.notes) li.append(el("div", { class: "note" }, `${n.author}: ${n.text}`));
  for (const d of a.dispatches) {
    const state = d.delivered_ts ? "webhook delivered"
      : d.last_error && d.last_error.startsWith("no webhook") ? "by phone (no webhook)"
        : d.last_error ? `webhook pending, retrying (${d.last_error})` : "sending";
    li.append(el("div", { class: "dispatch" }, `dispatched to ${d.agency} by ${d.author} — ${state}`));
  }
  if (canOperate()) {
    const bar = el("div", { class: "actions" });
    const act = (name, label, body) => el("button", { "data-action": name, onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const r = await post(`/api/alarms/${a.id}/${name}`, typeof body === "function" ? body() : body);
        if (r.message) li.querySelector(".result").textContent = (r.ok ? "✓ " : "✗ ") + r.message;
        if (r.ok && name === "note") input.value = "";  // posted: not a draft to keep
      } catch (e) { li.querySelector(".result").textContent = "✗ " + e.message; }
      ev.target.disabled = false; refreshAlarms();
    } }, label);
    if (a.state === "new") bar.append(act("claim", "Claim"));
    if (a.state !== "acked") bar.append(act("ack", "Acknowledge"));
    if (ronda.me.commands) bar.append(act("silence", "Silence the siren at the post"));
    const select = el("select", { "data-field": "agency" },
      ...ronda.me.agencies.map((g) => el("option", { value: g.id }, `${g.name} (${g.phone})`)));
    bar.append(select, act("dispatch", "Dispatch", () => ({ agency: select.value })));
    const input = el("input", { placeholder: "note", "data-field": "note", maxlength: "2000" });
    bar.append(input, act("note", "Add note", () => ({ text: input.value })));
    li.append(bar);
  }
  li.append(el("div", { class: "result" }));
  return li;
}

// What an operator has typed or chosen on each card (note, agency), and where the caret is.
function draftsOf(ol) {
  const drafts = {};
  for (const li of ol.children) {
    const note = li.querySelector('[data-field="note"]');
    const agency = li.querySelector('[data-field="agency"]');
    drafts[li.id] = { note: note ? note.value : "", agency: agency ? agency.value : null,
      focused: note !== null && document.activeElement === note,
      caret: note ? note.selectionStart : 0 };
  }
  return drafts;
}
function restoreDrafts(ol, drafts) {
  for (const li of ol.children) {
    const d = drafts[li.id];
    if (!d) continue;
    const note = li.querySelector('[data-field="note"]');
    const agency = li.querySelector('[data-field="agency"]');
    if (note && d.note) note.value = d.note;
    if (agency && d.agency !== null) agency.value = d.agency;
    if (note && d.focused) { note.focus(); note.setSelectionRange(d.caret, d.caret); }
  }
}

async function refreshAlarms(pushed) {
  const list = pushed || await get("/api/alarms");
  ronda.alarms = list;
  const ol = $("alarms");
  const drafts = draftsOf(ol);  // a live update must not wipe what an operator is typing
  ol.replaceChildren(...list.map(alarmCard));
  restoreDrafts(ol, drafts);
  const shown = Date.now();
  for (const a of list) if (!(a.alarm_id in ronda.firstSeen)) ronda.firstSeen[a.alarm_id] = shown;
  $("alarm-count").textContent = list.length;
  $("no-alarms").hidden = list.length > 0;
  setAlert(list.some((a) => a.state === "new"));
  if (!$("view-home").hidden) drawMap();
}

// -- map: Web Mercator; tiles when a tile URL is configured, else a plain layout -----------------
function project(lat, lon, z) {
  const n = 256 * 2 ** z, s = Math.sin(lat * Math.PI / 180);
  return [(lon + 180) / 360 * n, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * n];
}
async function refreshNodes() { ronda.nodes = await get("/api/nodes"); drawMap(); }
function drawMap() {
  const svg = $("map"), W = 900, H = 640, pad = 30;
  const alarmed = new Set(ronda.alarms.filter((a) => a.state !== "acked").map((a) => a.node));
  const nodes = ronda.nodes;
  const placed = nodes.filter((n) => n.lat !== null && n.lon !== null);
  const unplaced = nodes.filter((n) => n.lat === null || n.lon === null);
  const gridH = unplaced.length ? Math.min(260, 16 * Math.ceil(unplaced.length / 54) + 24) : 0;
  const items = [];
  let z = 16, x0 = 0, y0 = 0;
  if (placed.length) {
    for (z = 18; z > 1; z--) {
      const pts = placed.map((n) => project(n.lat, n.lon, z));
      const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
      if (Math.max(...xs) - Math.min(...xs) <= W - 2 * pad && Math.max(...ys) - Math.min(...ys) <= H - gridH - 2 * pad) {
        x0 = (Math.max(...xs) + Math.min(...xs)) / 2 - W / 2;
        y0 = (Math.max(...ys) + Math.min(...ys)) / 2 - (H - gridH) / 2;
        break;
      }
    }
    const url = ronda.me.tiles_url;
    if (url) {
      for (let tx = Math.floor(x0 / 256); tx * 256 < x0 + W; tx++) {
        for (let ty = Math.floor(y0 / 256); ty * 256 < y0 + H - gridH; ty++) {
          const href = url.replace("{z}", z).replace("{x}", tx).replace("{y}", ty);
          items.push(el("image", { svg: 1, href, x: tx * 256 - x0, y: ty * 256 - y0, width: 256, height: 256, class: "tile" }));
        }
      }
    }
  }
  const dot = (n, x, y) => el("a", { svg: 1, href: `/node/${encodeURIComponent(n.id)}` },
    el("circle", { svg: 1, cx: x.toFixed(1), cy: y.toFixed(1), r: 6,
      class: `post ${alarmed.has(n.id) ? "alarm" : n.state}`, "data-node": n.id },
      el("title", { svg: 1 }, `${n.name} — ${alarmed.has(n.id) ? "alarm" : n.state}${n.lost ? `, ${n.lost} events lost` : ""}`)));
  for (const n of placed) {
    const [x, y] = project(n.lat, n.lon, z);
    items.push(dot(n, x - x0, y - y0));
  }
  if (unplaced.length) {
    const top = H - gridH + 4;
    items.push(el("line", { svg: 1, x1: 0, x2: W, y1: top, y2: top, class: "grid-sep" }));
    items.push(el("text", { svg: 1, x: 8, y: top + 14, class: "grid-label" }, `${unplaced.length} posts without a position`));
    unplaced.forEach((n, i) => items.push(dot(n, 12 + (i % 54) * 16, top + 30 + Math.floor(i / 54) * 16)));
  }
  svg.replaceChildren(...items);
  const counts = {};
  for (const n of nodes) { const s = alarmed.has(n.id) ? "alarm" : n.state; counts[s] = (counts[s] || 0) + 1; }
  $("map-summary").textContent = `${nodes.length} posts: ` + Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
  $("attribution").textContent = ronda.me.tiles_url ? ronda.me.tiles_attribution : "plain layout (no map tiles configured)";
  ronda.mapDrawn = Date.now();
}

// -- node page -----------------------------------------------------------------------------------
function chart(title, points, unit) {
  const W = 280, H = 80, vals = points.filter((p) => p[1] !== null && p[1] !== undefined);
  const box = el("figure", { class: "chart" }, el("figcaption", {}, title));
  if (!vals.length) { box.append(el("p", { class: "muted" }, "no data")); return box; }
  const t0 = vals[0][0], t1 = vals[vals.length - 1][0] || t0 + 1;
  const v = vals.map((p) => p[1]), lo = Math.min(...v), hi = Math.max(...v);
  const pts = vals.map((p) => `${((p[0] - t0) / Math.max(1, t1 - t0) * (W - 4) + 2).toFixed(1)},${(H - 4 - (p[1] - lo) / Math.max(1e-9, hi - lo) * (H - 8)).toFixed(1)}`);
  box.append(el("svg", { svg: 1, width: W, height: H, viewBox: `0 0 ${W} ${H}` },
    el("polyline", { svg: 1, points: pts.join(" "), class: "line" })),
  el("figcaption", { class: "muted" }, `now ${v[v.length - 1]}${unit} · min ${lo}${unit} · max ${hi}${unit}`));
  return box;
}
async function showNode(id) {
  const n = await get(`/api/nodes/${encodeURIComponent(id)}`);
  $("node-title").textContent = `${n.name} (${n.id})`;
  $("node-summary").textContent = `state: ${n.state} · status ${n.status} · ${n.received} events received, ${n.lost} events lost, ${n.duplicates} duplicates dropped` +
    (n.lat !== null ? ` · position ${n.lat}, ${n.lon}` : " · no position");
  $("node-problems").replaceChildren(...n.problems.map((p) => el("li", {}, p)));
  const h = n.history;
  $("node-charts").replaceChildren(
    chart("temperature", h.map((r) => [r.ts, r.temperature_c]), " °C"),
    chart("disk used", h.map((r) => [r.ts, r.disk_percent]), " %"),
    chart("undervoltage", h.map((r) => [r.ts, r.undervoltage]), ""),
    chart("uptime", h.map((r) => [r.ts, r.uptime_s === null ? null : Math.round(r.uptime_s / 3600 * 10) / 10]), " h"));
  if (!n.cameras.length) $("node-cameras").replaceChildren(el("p", { class: "muted" }, "no cameras reported"));
  else $("node-cameras").replaceChildren(...n.cameras.map((c) => el("figure", { class: "camera" },
    c.snapshot_ts ? el("img", { src: `/api/nodes/${encodeURIComponent(n.id)}/cameras/${encodeURIComponent(c.name)}.jpg?t=${c.snapshot_ts}`, alt: c.name })
      : el("p", { class: "muted" }, "no snapshot yet"),
    el("figcaption", {}, `${c.name}: ${c.state || "?"} · ${c.snapshot_ts ? "picture " + ago(c.snapshot_ts) : ""}`),
    canOperate() && ronda.me.commands && ronda.me.live
      ? el("button", { type: "button", class: "watch-live", "data-camera": c.name, onclick: () => watchLive(n.id, c.name) }, "Watch live")
      : "")));
  $("node-outputs").replaceChildren(...n.outputs.map((o) => el("li", {}, `${o.name}: ${o.state} (${o.cause}, ${when(o.ts)})`)));
  $("node-events").replaceChildren(...n.events.map((e) => el("tr", {},
    el("td", {}, when(e.ts)), el("td", {}, e.seq), el("td", {}, e.kind ? `${e.type} (${e.kind})` : e.type),
    el("td", {}, e.phase || ""), el("td", {}, e.camera || ""),
    el("td", {}, e.snapshot ? el("a", { href: `/api/events/${e.id}/snapshot.jpg`, target: "_blank" }, "picture") : ""))));
  setupFootage(n);
  await showFootage(n.id);
}

// -- live video: a signed `live`, renewed while the page is open; HLS from the media server,
// relayed by the console and played with hls.js (Chromium has no native HLS) -----------------
const viewer = Math.random().toString(36).slice(2, 12);
let live = null;  // {node, camera, hls, renew}
function loadHls() {
  if (window.Hls) return Promise.resolve();
  return new Promise((ok, fail) => document.head.append(el("script", {
    src: "/static/vendor/hls.light.min.js", onload: ok, onerror: () => fail(new Error("hls.js did not load")) })));
}
async function watchLive(node, camera) {
  await stopLive();
  $("live-panel").hidden = false;
  $("live-title").textContent = `Live: ${camera}`;
  $("live-state").textContent = "asking the post to send video…";
  let r;
  try { r = await post(`/api/nodes/${encodeURIComponent(node)}/live`, { camera, viewer }); }
  catch (e) { $("live-state").textContent = e.message; return; }
  $("live-state").textContent = r.message;
  if (!r.ok) return;
  live = { node, camera, hls: null };
  const me = live;
  live.renew = setInterval(() => post(`/api/nodes/${encodeURIComponent(node)}/live`, { camera, viewer })
    .then((x) => { if (!x.ok) $("live-state").textContent = x.message; }).catch(() => {}), r.renew_s * 1000);
  await loadHls();
  // the media server writes the playlist once the first fragment is in: wait for it
  for (let i = 0; i < 60 && live === me; i++) {
    const probe = await fetch(r.playlist, { credentials: "same-origin", cache: "no-store" });
    if (probe.ok && (await probe.text()).includes("#EXTINF")) break;  // a fragment is listed
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  if (live !== me) return;
  const video = $("live-video");
  if (window.Hls.isSupported()) {
    me.hls = new window.Hls({ liveSyncDurationCount: 2, manifestLoadingMaxRetry: 6 });
    me.hls.on(window.Hls.Events.ERROR, (_e, d) => {
      if (!d.fatal || live !== me) return;
      // a slow post or media server is not the end: recover as hls.js advises, and say so
      $("live-state").textContent = `video: ${d.details} (retrying)`;
      if (d.type === window.Hls.ErrorTypes.MEDIA_ERROR) me.hls.recoverMediaError();
      else setTimeout(() => { if (live === me) me.hls.startLoad(); }, 1000);
    });
    me.hls.loadSource(r.playlist);
    me.hls.attachMedia(video);
  } else video.src = r.playlist;  // Safari plays HLS itself
  video.play().catch(() => {});
  $("live-state").textContent = `${r.message} · playing`;
}
async function stopLive(keepalive) {
  if (!live) return;
  const { node, camera, hls, renew } = live;
  live = null;
  clearInterval(renew);
  if (hls) hls.destroy();
  const video = $("live-video");
  video.removeAttribute("src"); video.load();
  const url = `/api/nodes/${encodeURIComponent(node)}/live-stop`;
  const req = fetch(url, { method: "POST", keepalive: !!keepalive, credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Ronda": "1" }, body: JSON.stringify({ camera, viewer }) });
  if (!keepalive) { $("live-state").textContent = "stopped"; $("live-panel").hidden = true; await req.catch(() => {}); }
}
window.addEventListener("pagehide", () => { stopLive(true); });

// -- footage on request: a signed `fetch` that uploads to the console itself -------------------
const localInput = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
function setupFootage(n) {
  const form = $("footage-form");
  if (!canOperate() || !ronda.me.commands) return;
  const select = $("footage-camera"), names = n.cameras.map((c) => c.name);
  if (select.dataset.names !== names.join(",")) {
    select.replaceChildren(...names.map((c) => el("option", { value: c }, c)));
    select.dataset.names = names.join(",");
  }
  if (!form.dataset.ready) {
    form.dataset.ready = "1";
    const now = new Date();
    $("footage-start").value = localInput(new Date(now.getTime() - 120000));
    $("footage-end").value = localInput(now);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const start = new Date($("footage-start").value).getTime() / 1000;
      const end = new Date($("footage-end").value).getTime() / 1000;
      $("footage-result").textContent = "asking the post…";
      try {
        const r = await post(`/api/nodes/${encodeURIComponent(n.id)}/footage`, { camera: select.value, start, end });
        $("footage-result").textContent = r.message;
      } catch (e) { $("footage-result").textContent = e.message; }
      showFootage(n.id);
    });
  }
  form.hidden = !names.length;
}
function footageText(f) {
  const range = `${f.camera} ${when(f.start_ts)} – ${when(f.end_ts)} (asked by ${f.author})`;
  if (f.state === "uploaded") return `${range}: received, ${(f.bytes / 1e6).toFixed(1)} MB`;
  if (f.state === "refused") return `${range}: refused: ${f.message}`;
  const p = f.progress;
  if (!p) return `${range}: ${f.state}${f.message ? ": " + f.message : ""}`;
  const d = p.detail || {};
  const extra = p.phase === "progress" ? ` ${d.percent} %` : p.phase === "queued" ? ` (position ${d.position})`
    : d.reason ? `: ${d.reason}` : "";
  return `${range}: ${p.phase}${extra}`;
}
async function showFootage(node) {
  const rows = await get(`/api/nodes/${encodeURIComponent(node)}/footage`);
  const list = $("footage-list"), seen = new Set();
  for (const f of rows) {
    seen.add(f.id);
    const text = footageText(f);
    let li = document.getElementById(`footage-${f.id}`);
    if (li && li.dataset.text === text) continue;  // unchanged: keep a playing video playing
    const fresh = el("li", { id: `footage-${f.id}`, "data-state": f.state, "data-phase": f.progress ? f.progress.phase : "" },
      el("span", { class: "footage-text" }, text));
    fresh.dataset.text = text;
    if (f.state === "uploaded") {
      const src = `/api/footage/${f.id}.mp4`;
      fresh.append(el("br"), el("video", { src, controls: "", preload: "metadata", width: 480 }), el("br"),
        el("a", { href: `${src}?download=1`, download: "" }, "download MP4"));
    }
    if (li) li.replaceWith(fresh); else list.prepend(fresh);
  }
  for (const li of [...list.children]) if (!seen.has(li.id.slice(8))) li.remove();
  const order = rows.map((f) => document.getElementById(`footage-${f.id}`));
  if (order.some((li, i) => list.children[i] !== li)) list.replaceChildren(...order);
  const pending = rows.some((f) => !["uploaded", "refused"].includes(f.state) &&
    !(f.progress && f.progress.phase === "failed"));
  clearTimeout(ronda.footageTimer);
  if (pending) ronda.footageTimer = setTimeout(() => showFootage(node), 2000);
}

async function showMaintenance() {
  const rows = await get("/api/maintenance");
  $("maintenance").replaceChildren(...rows.map((r) => el("tr", {},
    el("td", {}, el("a", { href: `/node/${encodeURIComponent(r.id)}` }, r.name)),
    el("td", {}, r.problems.join("; ")), el("td", {}, ago(r.last_seen)))));
}
async function showAudit() {
  const rows = await get("/api/audit");
  $("audit").replaceChildren(...rows.map((r) => el("tr", {}, el("td", {}, when(r.ts)), el("td", {}, r.username),
    el("td", {}, r.action), el("td", {}, r.target || ""), el("td", {}, r.detail || ""), el("td", {}, r.result))));
}
async function showAgency(id) {
  const data = await get(`/api/agency/${encodeURIComponent(id)}`);
  $("agency-title").textContent = `${data.agency.name} — ${data.agency.kinds.join(", ")}`;
  $("agency-alarms").replaceChildren(...data.alarms.map((a) => el("tr", { class: a.state }, el("td", {}, when(a.raised_ts)),
    el("td", {}, a.node_name), el("td", {}, a.kind), el("td", {}, a.state),
    el("td", {}, a.lat !== null ? `${a.lat}, ${a.lon}` : ""))));
}

// -- routing and live updates --------------------------------------------------------------------
async function main() {
  const path = location.pathname;
  const home = !/^\/(node|agency|maintenance|audit)/.test(path);
  // the home page's three calls go out together, and the map is drawn once, with alarms
  const [me, nodes, alarms] = await Promise.all([get("/api/me"),
    home ? get("/api/nodes") : null, home ? get("/api/alarms") : null]);
  ronda.me = me;
  $("who").textContent = `${ronda.me.name} (${ronda.me.agency || ronda.me.role})`;
  for (const a of document.querySelectorAll("[data-role=admin]")) a.hidden = ronda.me.role !== "admin";
  let refresh = null;
  $("live-stop").addEventListener("click", () => stopLive());
  if (path.startsWith("/node/")) { $("view-node").hidden = false; refresh = () => showNode(decodeURIComponent(path.slice(6))); }
  else if (path === "/maintenance") { $("view-maintenance").hidden = false; refresh = showMaintenance; }
  else if (path === "/audit") { $("view-audit").hidden = false; refresh = showAudit; }
  else if (path.startsWith("/agency/")) { $("view-agency").hidden = false; $("nav").hidden = true; refresh = () => showAgency(decodeURIComponent(path.slice(8))); }
  else { $("view-home").hidden = false; refresh = async () => { await refreshNodes(); }; }
  if (home) {
    ronda.nodes = nodes;
    await refreshAlarms(alarms);  // draws the map too
  } else {
    await refresh();
    if (!path.startsWith("/agency/")) await refreshAlarms();
  }
  const source = new EventSource("/api/stream");
  source.addEventListener("hello", () => { $("live").textContent = "live"; });
  // the server pushes the open queue itself: no extra round trip when a panic arrives
  source.addEventListener("alarms", (ev) => {
    if (path.startsWith("/agency/")) showAgency(decodeURIComponent(path.slice(8)));
    else refreshAlarms(JSON.parse(ev.data));
  });
  source.onerror = () => { $("live").textContent = "reconnecting…"; };
  setInterval(refresh, 10000);
  ronda.ready = true;
}
main();
