// Ronda's page: plain JavaScript, no build step, no external assets.
"use strict";
const $ = (id) => document.getElementById(id);
let ME = null;                       // /api/me: user, role, csrf, strings, cameras
const T = (k, v = {}) => (ME.strings[k] || k).replace(/\{(\w+)\}/g, (_, n) => v[n]);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid);
  return e;
};
const pad = (n) => String(n).padStart(2, "0");
const hms = (ts) => { const d = new Date(ts * 1000); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
const dayStart = (value) => { const [y, m, d] = value.split("-").map(Number); return new Date(y, m - 1, d).getTime() / 1000; };
const today = () => { const d = new Date(); return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`; };
const enc = encodeURIComponent;

async function api(path, opts = {}) {
  const headers = Object.assign({ "X-CSRF-Token": ME ? ME.csrf : "" }, opts.headers || {});
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, Object.assign({}, opts, { headers, credentials: "same-origin" }));
  if (r.status === 401) { location.href = "/login"; throw new Error("log in"); }
  let data = {};
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) { const err = new Error(data.error || r.statusText); err.status = r.status; err.data = data; throw err; }
  return data;
}

function note(id, text) { const n = $(id); n.textContent = text || ""; n.hidden = !text; }

// ---- overview (server-sent events) -------------------------------------------------
let lastOverview = null;
function badge(state, label) { return el("span", { class: `badge ${state}`, text: label || T(state) }); }
function renderOverview(o) {
  lastOverview = o;
  const cams = $("cams"); cams.replaceChildren();
  for (const c of o.cameras) {
    const img = el("img", { alt: c.name, loading: "lazy", src: `/api/cameras/${enc(c.name)}/snapshot.jpg?${Math.floor(o.ts / 10)}` });
    img.onerror = () => { img.removeAttribute("src"); };
    const link = el("a", { href: `#live/${enc(c.name)}` }, img);
    cams.append(el("div", { class: "card cam", "data-camera": c.name }, link,
      el("h3", {}, `${c.name} `, badge(c.state)),
      el("div", { class: "muted", text: `${c.reason || ""}` }),
      el("div", { class: "muted", text: `${c.days} ${T("days")}` })));
  }
  const a = o.alarm;
  $("card-alarm").replaceChildren(el("h3", { text: T("alarm") }),
    badge(a.state === "alarm" ? "alarm" : "idle", a.state === "alarm" ? T("alarm_on") : T("idle")),
    el("div", { class: "muted", text: Object.entries(a.outputs || {}).map(([k, v]) => `${k}: ${v}`).join(", ") }));
  $("card-cc").replaceChildren(el("h3", { text: T("cc") }),
    o.cc ? badge(o.cc.connected ? "connected" : "disconnected") : el("span", { class: "muted", text: "-" }),
    el("div", { class: "muted", text: o.cc ? `${o.cc.outbox} ${T("outbox")}` : "" }));
  const h = o.health, d = h.disk || {};
  const gb = (b) => (b == null ? "?" : (b / 1e9).toFixed(1) + " GB");
  const up = h.uptime_s == null ? "?" : `${Math.floor(h.uptime_s / 3600)} h ${Math.floor(h.uptime_s % 3600 / 60)} min`;
  const power = h.throttled == null ? "-" : (h.throttled.length ? h.throttled.join(", ") : T("ok_power"));
  $("card-node").replaceChildren(el("h3", { text: T("node") }),
    el("div", { text: `${T("temperature")}: ${h.temperature_c == null ? "-" : h.temperature_c.toFixed(0) + " °C"}` }),
    el("div", { text: `${T("undervoltage")}: ${power}` }),
    el("div", {}, `${T("disk")}: `, badge(d.state === "ok" ? "ok" : (d.state || "?"), d.state || "?"),
      ` ${gb(d.used)} / ${gb(d.quota)}`, el("div", { class: "muted", text: d.reason || "" })),
    el("div", { text: `${T("uptime")}: ${up}` }));
  const banner = $("alarm-banner");
  banner.hidden = a.state !== "alarm"; banner.textContent = T("alarm_on");
  renderAlarm(o);
}
function startOverview() {
  const es = new EventSource("/api/overview/stream");
  es.addEventListener("overview", (ev) => renderOverview(JSON.parse(ev.data)));
  es.onerror = () => { es.close(); setTimeout(startOverview, 3000); };
}

// ---- live view: fragmented MP4 over a WebSocket into Media Source Extensions -------
let live = null;
function stopLive() {
  if (!live) return;
  live.closed = true; clearInterval(live.snapTimer);
  try { live.ws.close(); } catch (e) { /* closed */ }
  const v = $("live-video"); v.removeAttribute("src"); v.load();
  live = null;
}
function startLive(cam) {
  stopLive();
  const v = $("live-video"), snap = $("live-snap");
  v.hidden = false; snap.hidden = true; note("live-note", "");
  const proto = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(`${proto}${location.host}/api/cameras/${enc(cam)}/live`);
  ws.binaryType = "arraybuffer";
  const st = { ws, cam, queue: [], sb: null, closed: false, snapTimer: null };
  live = st;
  const pump = () => {
    if (!st.sb || st.sb.updating || !st.queue.length) return;
    const b = v.buffered;
    if (b.length && v.currentTime - b.start(0) > 30) { st.sb.remove(b.start(0), v.currentTime - 10); return; }
    try { st.sb.appendBuffer(st.queue.shift()); } catch (e) { st.queue = []; }
  };
  const chase = () => {   // stay at the live edge
    const b = v.buffered;
    if (!b.length) return;
    const end = b.end(b.length - 1);
    if (end - v.currentTime > 1.5 || v.currentTime < b.start(b.length - 1)) v.currentTime = Math.max(b.start(b.length - 1), end - 0.2);
    if (v.paused) v.play().catch(() => {});
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") { st.queue.push(ev.data); pump(); return; }
    const m = JSON.parse(ev.data);
    if (m.type === "init") {
      const ms = new MediaSource();
      st.queue = []; st.sb = null;
      v.src = URL.createObjectURL(ms);
      ms.addEventListener("sourceopen", () => {
        if (!MediaSource.isTypeSupported(m.mime)) { snapshots(cam, T("h265_note")); return; }
        st.sb = ms.addSourceBuffer(m.mime);
        st.sb.mode = "segments";
        st.sb.addEventListener("updateend", () => { chase(); pump(); });
        pump();
      }, { once: true });
      $("live-state").textContent = m.mime;
      st.t0 = m.t0;  // wall time the relay started: live delay = now - t0 - currentTime
    } else if (m.type === "unsupported") {
      snapshots(cam, T("h265_note"));
    } else if (m.type === "full") {
      note("live-note", T("viewers_full")); st.closed = true;
    } else if (m.type === "error") {
      note("live-note", `${T("stream_error")} (${m.message})`);
    }
  };
  ws.onclose = () => { if (!st.closed && live === st) setTimeout(() => { if (live === st) startLive(cam); }, 3000); };
}
function snapshots(cam, why) {
  const v = $("live-video"), snap = $("live-snap");
  v.hidden = true; snap.hidden = false; note("live-note", why);
  const load = () => { snap.src = `/api/cameras/${enc(cam)}/snapshot.jpg?${Date.now()}`; };
  load();
  if (live) { live.closed = true; try { live.ws.close(); } catch (e) { /* */ } live.snapTimer = setInterval(load, 5000); }
}

// ---- recordings: day and hour bars, playback, download ------------------------------
const rec = { cam: null, day: null, hour: null, start: 0, playing: null };
function place(parent, cls, from, to, lo, hi) {
  const left = Math.max(0, (from - lo) / (hi - lo)) * 100;
  const right = Math.min(1, (to - lo) / (hi - lo)) * 100;
  if (right <= 0 || left >= 100) return null;
  const e = el("div", { class: cls });
  e.style.left = `${left}%`; e.style.width = cls === "mark" ? "" : `${Math.max(0.3, right - left)}%`;
  parent.append(e);
  return e;
}
function drawBar(bar, data, lo, hi) {
  bar.replaceChildren();
  for (const [s, e] of data.spans) place(bar, "span", s, e, lo, hi);
  for (const c of data.clips) place(bar, "clip", c.start, c.end, lo, hi);
  for (const m of data.marks) { const e = place(bar, "mark", m.ts, m.ts, lo, hi); if (e) e.title = `${m.type} ${hms(m.ts)}`; }
  bar.dataset.lo = lo; bar.dataset.hi = hi;
}
async function loadTimeline() {
  if (!rec.cam) return;
  const lo = dayStart($("rec-day").value), hi = lo + 86400;
  note("rec-note", "");
  try {
    rec.data = await api(`/api/cameras/${enc(rec.cam)}/timeline?start=${lo}&end=${hi}`);
  } catch (e) {
    rec.data = { spans: [], clips: [], marks: [] };
    note("rec-note", `${T("storage_missing")}: ${e.message}`);
  }
  drawBar($("day-bar"), rec.data, lo, hi);
  const last = rec.data.spans.length ? rec.data.spans[rec.data.spans.length - 1][1] : lo + 12 * 3600;
  showHour(rec.hour && rec.hour >= lo && rec.hour < hi ? rec.hour : Math.floor((last - lo - 1) / 3600) * 3600 + lo);
}
function showHour(h) {
  rec.hour = h;
  drawBar($("hour-bar"), rec.data, h, h + 3600);
  const sel = el("div", { class: "sel" });
  sel.style.left = `${(h - Number($("day-bar").dataset.lo)) / 864}%`; sel.style.width = `${100 / 24}%`;
  $("day-bar").append(sel);
  $("hour-scale").replaceChildren(...[0, 15, 30, 45, 60].map((m) => el("span", { text: `${pad(new Date((h + m * 60) * 1000).getHours())}:${pad(m % 60)}` })));
}
function barTime(bar, ev) {
  const r = bar.getBoundingClientRect();
  const f = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
  return Number(bar.dataset.lo) + f * (Number(bar.dataset.hi) - Number(bar.dataset.lo));
}
function play(t) {
  const v = $("rec-video");
  note("rec-note", "");
  rec.start = t; rec.requested = performance.now();
  v.src = `/api/cameras/${enc(rec.cam)}/play?t=${t.toFixed(3)}`;
  v.playbackRate = rec.rate || 1;
  v.play().catch(() => {});
  const from = new Date((t - 30) * 1000), to = new Date((t + 30) * 1000);
  $("dl-from").value = `${pad(from.getHours())}:${pad(from.getMinutes())}:${pad(from.getSeconds())}`;
  $("dl-to").value = `${pad(to.getHours())}:${pad(to.getMinutes())}:${pad(to.getSeconds())}`;
}
function tick() {
  const v = $("rec-video");
  if (!v.src) return;
  const now = rec.start + v.currentTime;
  $("rec-clock").textContent = hms(now);
  const bar = $("hour-bar");
  let cur = bar.querySelector(".cursor");
  if (!cur) { cur = el("div", { class: "cursor" }); bar.append(cur); }
  cur.style.left = `${Math.min(100, Math.max(0, (now - Number(bar.dataset.lo)) / 36))}%`;
}
async function download() {
  const lo = dayStart($("rec-day").value);
  const sec = (s) => { const [h, m, x] = s.split(":").map(Number); return h * 3600 + m * 60 + (x || 0); };
  const start = lo + sec($("dl-from").value), end = lo + sec($("dl-to").value);
  const prog = $("dl-progress"), state = $("dl-state");
  prog.hidden = false; prog.value = 0; state.textContent = T("preparing"); $("dl-link").hidden = true;
  try {
    let job = await api("/api/exports", { method: "POST", json: { camera: rec.cam, start, end } });
    while (job.state === "running") {
      await new Promise((r) => setTimeout(r, 400));
      job = await api(`/api/exports/${job.id}`);
      prog.value = job.progress;
    }
    if (job.state !== "done") throw new Error(job.error);
    prog.value = 1;
    state.textContent = job.name + job.gaps.map(([a, b]) => ` · ${T("gap")} ${hms(a)}–${hms(b)}`).join("");
    const a = $("dl-link"); a.href = job.file; a.download = job.name; a.textContent = job.name; a.hidden = false;
    a.click();
  } catch (e) { state.textContent = `${T("error")}: ${e.message}`; }
}

// ---- events ------------------------------------------------------------------------
async function loadEvents() {
  const cam = $("ev-cam").value, type = $("ev-type").value, day = $("ev-day").value;
  const q = new URLSearchParams({ limit: "100" });
  if (cam) q.set("camera", cam);
  if (type) q.set("type", type);
  if (day) { q.set("start", dayStart(day)); q.set("end", dayStart(day) + 86400); }
  const list = $("ev-list");
  try {
    const data = await api(`/api/events?${q}`);
    const types = $("ev-type"), keep = types.value;
    types.replaceChildren(el("option", { value: "", text: `${T("type")}: ${T("all")}` }), ...data.types.map((t) => el("option", { value: t, text: t })));
    types.value = keep;
    list.replaceChildren(...data.events.map((e) => {
      const camera = e.camera || cam || ME.cameras[0];
      const src = e.snapshot ? `/api/events/${enc(e.id)}/snapshot.jpg` : (camera ? `/api/cameras/${enc(camera)}/frame.jpg?t=${e.ts}` : "");
      const img = el("img", { alt: "", loading: "lazy" });
      if (src) img.src = src;
      img.onerror = () => img.removeAttribute("src");
      const p = e.payload || {};
      const detail = [p.phase, p.label, p.state, p.reason, p.kind].filter(Boolean).join(" ");
      return el("li", { "data-type": e.type }, img, el("div", { class: "what" },
        el("strong", { text: `${e.type} ` }), el("span", { text: `${new Date(e.ts * 1000).toLocaleString()} ${e.camera || ""}` }),
        el("div", { class: "muted", text: detail })),
        camera ? el("a", { href: `#rec/${enc(camera)}/${e.ts}`, text: T("open") }) : "");
    }));
    if (!data.events.length) list.replaceChildren(el("li", { text: T("none") }));
  } catch (e) { list.replaceChildren(el("li", { text: `${T("error")}: ${e.message}` })); }
}

// ---- alarm -------------------------------------------------------------------------
function renderAlarm(o) {
  const a = o.alarm, info = a.alarm;
  $("alarm-state").replaceChildren(el("h3", { text: T("alarm") }),
    badge(a.state === "alarm" ? "alarm" : "idle", a.state === "alarm" ? T("alarm_on") : T("idle")),
    el("div", { class: "muted", text: info ? `${info.kind} · ${info.source} · ${hms(info.started)}` : "" }));
  $("alarm-outputs").replaceChildren(el("h3", { text: T("outputs") }),
    ...Object.entries(a.outputs || {}).map(([k, v]) => el("div", { "data-output": k, text: `${k}: ${v}` })));
}
async function alarmAction(path, body) {
  try { const r = await api(path, { method: "POST", json: body }); note("alarm-msg", r.message); }
  catch (e) { note("alarm-msg", e.status === 403 ? T("role_needed") : `${T("error")}: ${e.message}`); }
}

// ---- navigation --------------------------------------------------------------------
function route() {
  const [view, arg, extra] = (location.hash.slice(1) || "overview").split("/");
  const name = ["overview", "live", "rec", "events", "alarm"].includes(view) ? view : "overview";
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${name}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.getAttribute("href") === `#${name}`);
  if (name !== "live") stopLive();
  const cam = arg ? decodeURIComponent(arg) : ME.cameras[0];
  if (name === "live" && cam) { $("live-cam").value = cam; startLive(cam); }
  if (name === "rec" && cam) {
    rec.cam = cam; $("rec-cam").value = cam;
    if (extra) {
      const t = Number(extra), d = new Date(t * 1000);
      $("rec-day").value = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      rec.hour = Math.floor(t / 3600) * 3600;
      loadTimeline().then(() => play(t - 5));
    } else loadTimeline();
  }
  if (name === "events") loadEvents();
}

async function main() {
  ME = await api("/api/me");
  document.documentElement.lang = ME.lang;
  for (const e of document.querySelectorAll("[data-t]")) e.textContent = T(e.dataset.t);
  $("node-name").textContent = ME.node;
  $("logout").textContent = `${ME.user} · ${T("logout")}`;
  $("logout").onclick = async () => { await api("/logout", { method: "POST" }).catch(() => {}); location.href = "/login"; };
  document.body.dataset.role = ME.role;
  for (const e of document.querySelectorAll(".operator-only")) e.hidden = ME.role === "viewer";
  const opts = () => ME.cameras.map((c) => el("option", { value: c, text: c }));
  $("live-cam").replaceChildren(...opts()); $("rec-cam").replaceChildren(...opts());
  $("ev-cam").replaceChildren(el("option", { value: "", text: `${T("camera")}: ${T("all")}` }), ...opts());
  $("ev-type").replaceChildren(el("option", { value: "", text: `${T("type")}: ${T("all")}` }));
  $("pattern").replaceChildren(...ME.patterns.map((p) => el("option", { value: p, text: p })));
  $("rec-day").value = today();
  $("live-cam").onchange = () => { location.hash = `#live/${enc($("live-cam").value)}`; };
  $("rec-cam").onchange = () => { location.hash = `#rec/${enc($("rec-cam").value)}`; };
  $("rec-day").onchange = () => { rec.hour = null; loadTimeline(); };
  for (const id of ["ev-cam", "ev-type", "ev-day"]) $(id).onchange = loadEvents;
  $("day-bar").onclick = (ev) => showHour(Math.floor((barTime($("day-bar"), ev) - Number($("day-bar").dataset.lo)) / 3600) * 3600 + Number($("day-bar").dataset.lo));
  $("hour-bar").onclick = (ev) => play(barTime($("hour-bar"), ev));
  for (const b of document.querySelectorAll(".speed")) {
    b.onclick = () => {
      rec.rate = Number(b.dataset.rate); $("rec-video").playbackRate = rec.rate;
      for (const o of document.querySelectorAll(".speed")) o.classList.toggle("on", o === b);
    };
  }
  $("rec-video").addEventListener("playing", () => { if (rec.requested) { rec.startMs = performance.now() - rec.requested; rec.requested = 0; } });
  $("rec-video").addEventListener("error", () => note("rec-note", T("no_footage")));
  $("dl-go").onclick = download;
  $("ack").onclick = () => alarmAction("/api/alarm/ack", {});
  $("test-siren").onclick = () => {
    const p = $("pattern").value;
    if (confirm(T("confirm_test", { p }))) alarmAction("/api/alarm/test", { pattern: p, confirm: true });
  };
  setInterval(tick, 250);
  window.addEventListener("hashchange", route);
  startOverview();
  route();
}
main();
