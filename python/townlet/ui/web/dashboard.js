// The Townlet web dashboard: everything from the shard that serves this page (no CDN, no build step).
// The static map comes once from the `town_map` command; the town itself from WS /v1/stream (a snapshot, then one
// JSON Patch diff per tick), drawn at most once per animation frame. `window.townlet` holds what was drawn, for
// tests and for the curious.
"use strict";

const NEEDS = ["hunger", "hygiene", "energy"];
const COLOURS = ["#3fc1d6", "#d65fd0", "#e8d44d", "#6fd36b", "#ff9b3d", "#4d9bff", "#ff6b6b", "#b48cff", "#c6e36b"];
const GLYPHS = { bed: "b", shower: "s", stove: "k", fridge: "f", cafe_counter: "c", market_stall: "m" };
const NEEDS_UTILITY = { shower: "water", stove: "power", fridge: "power", cafe_counter: "power" };
const TARGETS = {
  self_sufficiency: { goal: 0.7, label: "self-sufficiency", src: "charter" },
  relationship_coverage: { goal: 0.6, label: "relationship coverage", src: "charter" },
  on_time_rate: { goal: 0.8, label: "on time", src: "ops" },
  faints: { goal: 0, label: "faints", atMost: true, count: true, src: "stability" },
};
const COUNTS = ["evictions", "queue_conflicts", "chat_success", "shared_meals"];
const FEED_EVENTS = new Set(["shift_late_start", "shift_absent", "shower_power_outage", "employment_exit_pending",
  "employment_exit_manual_request", "employment_exit_deferred", "agent_respawn", "agent_removed",
  "perturbation_started", "perturbation_ended", "perturbation_cancelled", "arranged_meet_relocated"]);
const HISTORY = 600;

const state = {
  town: null, snap: null, tick: -1, messages: 0, connected: false, drawn: {}, cell: 20,
  kpiHistory: [], seen: new Set(), errors: [],
};
window.townlet = {
  state,
  // What the canvas shows now: the tick and, per living agent, its cell and the pixel centre it was drawn at.
  view: () => ({ tick: state.drawnTick, cell: state.cell, agents: state.drawn }),
};

const $ = (id) => document.getElementById(id);

function token() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  return fromHash || sessionStorage.getItem("townlet-token") || "";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}

async function command(name, args, cmdId) {
  const body = { name, args: args || [], kwargs: {} };
  if (cmdId) body.cmd_id = cmdId;
  const res = await fetch("/v1/commands", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  return res.json();
}

function feed(text, kind) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  const list = $("feed");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

// -- the stream ---------------------------------------------------------------------------------------------

function unescape(part) { return part.replace(/~1/g, "/").replace(/~0/g, "~"); }

function applyPatch(doc, ops) {
  for (const op of ops) {
    const parts = op.path.split("/").slice(1).map(unescape);
    if (parts.length === 0) { doc = op.value; continue; }
    let target = doc;
    for (const p of parts.slice(0, -1)) target = target[p];
    const last = parts[parts.length - 1];
    if (op.op === "remove") delete target[last];
    else target[last] = op.value;
  }
  return doc;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const q = token() ? "?token=" + encodeURIComponent(token()) : "";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream${q}`);
  ws.onopen = () => setStatus("live", "live");
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "snapshot") state.snap = msg.data;
    else if (msg.type === "diff" && state.snap && msg.from === state.tick) state.snap = applyPatch(state.snap, msg.ops);
    else { ws.close(); return; } // out of step: reconnect for a fresh snapshot
    state.tick = msg.tick;
    state.messages += 1;
    schedule();
  };
  ws.onclose = (ev) => {
    setStatus(ev.reason ? `disconnected: ${ev.reason}` : "reconnecting", "down");
    setTimeout(connect, 1000);
  };
}

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + cls;
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

// -- drawing ------------------------------------------------------------------------------------------------

function initials(ids) {
  const used = new Set();
  const out = {};
  for (const id of ids) {
    const name = id.split("#")[0] || "?";
    let letter = name[0].toUpperCase();
    for (const c of name) { if (/[a-z]/i.test(c) && !used.has(c.toUpperCase())) { letter = c.toUpperCase(); break; } }
    used.add(letter);
    out[id] = letter;
  }
  return out;
}

function drawMap() {
  const town = state.town, snap = state.snap;
  if (!town || !snap) return;
  const canvas = $("map");
  // A long town (town64: 256 x 15) takes the whole row, its cells as large as the row allows.
  const wide = town.width > 2 * town.height && town.width > 48;
  canvas.parentElement.classList.toggle("wide", wide);
  const room = wide ? canvas.parentElement.clientWidth - 20 : 720;
  const cell = Math.max(4, Math.min(24, Math.floor(room / Math.max(town.width, wide ? 0 : town.height))));
  state.cell = cell;
  if (canvas.width !== town.width * cell) canvas.width = town.width * cell;
  if (canvas.height !== town.height * cell) canvas.height = town.height * cell;
  const g = canvas.getContext("2d");
  g.fillStyle = "#2a2e35";
  g.fillRect(0, 0, canvas.width, canvas.height);
  town.walls.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) {
      g.fillStyle = row[x] === "#" ? "#6b717c" : "#23262b";
      g.fillRect(x * cell, y * cell, cell, cell);
    }
  });
  const utilities = (snap.economy || {}).utilities || {};
  g.textAlign = "center";
  g.textBaseline = "middle";
  g.font = `${Math.floor(cell * 0.6)}px monospace`;
  for (const o of town.objects) {
    const [x, y] = o.position;
    const out = utilities[NEEDS_UTILITY[o.type]] === false;
    g.fillStyle = out ? "#b83a33" : "#3d4450";
    g.fillRect(x * cell + 1, y * cell + 1, cell - 2, cell - 2);
    g.fillStyle = "#cfd3da";
    g.fillText(GLYPHS[o.type] || o.type[0], x * cell + cell / 2, y * cell + cell / 2 + 1);
  }
  const ids = Object.keys(snap.agents);
  const letters = initials(ids);
  const drawn = {};
  g.font = `bold ${Math.floor(cell * 0.55)}px sans-serif`;
  ids.forEach((id, k) => {
    const a = snap.agents[id];
    if (!a.alive) return;
    const [x, y] = a.position;
    const px = x * cell + cell / 2, py = y * cell + cell / 2;
    const colour = COLOURS[k % COLOURS.length];
    g.beginPath();
    g.arc(px, py, cell * 0.45, 0, 2 * Math.PI);
    g.fillStyle = colour;
    g.fill();
    g.fillStyle = "#111";
    g.fillText(letters[id], px, py + 1);
    drawn[id] = { x, y, px, py, colour };
  });
  const stacked = {};
  for (const a of Object.values(drawn)) stacked[`${a.x},${a.y}`] = (stacked[`${a.x},${a.y}`] || 0) + 1;
  g.font = `bold ${Math.max(8, Math.floor(cell * 0.45))}px sans-serif`;
  for (const [key, n] of Object.entries(stacked)) {
    if (n < 2) continue;  // several agents on one cell (a queue, a shift): how many, at its top right corner
    const [x, y] = key.split(",").map(Number);
    g.fillStyle = "#f5f5f5";
    g.fillText(String(n), x * cell + cell - 3, y * cell + 4);
  }
  state.drawn = drawn;
  state.drawnTick = snap.tick;
}

function bar(value) {
  const v = Math.max(0, Math.min(1, value));
  const colour = v < 0.25 ? "var(--bad)" : v < 0.5 ? "var(--warn)" : "var(--ok)";
  return `<div class="bar" title="${v.toFixed(2)}"><div style="width:${(v * 100).toFixed(0)}%;background:${colour}"></div></div>`;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function renderAgents(snap) {
  const ids = Object.keys(snap.agents);
  const letters = initials(ids);
  const pending = new Set((snap.employment || {}).pending || []);
  $("agents").tBodies[0].innerHTML = ids.map((id, k) => {
    const a = snap.agents[id];
    const act = a.activity || {};
    const doing = !a.alive ? "gone" : act.affordance ? act.affordance : "idle";
    const wallet = a.wallet === null ? "-" : a.wallet.toFixed(1);
    // The last action and its probability under the acting policy ("—" where the snapshot has null: possessed).
    const prob = a.action_prob === null || a.action_prob === undefined ? "—" : a.action_prob.toFixed(2);
    const action = `<td class="action${a.possessed ? " possessed" : ""}"${a.possessed ? ' title="possessed"' : ""}>` +
      `${esc(a.action || "—")} <span class="prob">${prob}</span></td>`;
    return `<tr data-agent="${esc(id)}" class="${a.alive ? "" : "muted"}"><td><span class="dot" style="background:${COLOURS[k % COLOURS.length]}">${esc(letters[id])}</span></td>` +
      `<td${pending.has(id) ? ' class="bad" title="in the exit queue"' : ""}>${esc(id)}</td>` +
      NEEDS.map((n) => `<td>${bar(a.needs[n])}</td>`).join("") +
      `<td class="num">${wallet}</td><td class="shift-${esc(a.shift_state)}">${esc(a.shift_state)}</td><td>${esc(doing)}</td>${action}</tr>`;
  }).join("");
}

function kpiClass(name, value) {
  const t = TARGETS[name];
  if (!t) return "";
  const met = t.atMost ? value <= t.goal : value >= t.goal;
  const near = t.atMost ? value <= t.goal * 1.1 + 1 : value >= t.goal * 0.9;
  return met ? "ok" : near ? "warn" : "bad";
}

function renderKpis(snap) {
  const k = snap.kpis || {};
  const rows = Object.entries(TARGETS).filter(([n]) => n in k).map(([n, t]) => {
    const v = k[n];
    const shown = t.count ? String(v) : (v * 100).toFixed(1) + " %";
    const goal = (t.atMost ? "≤ " : "≥ ") + (t.count ? t.goal : (t.goal * 100).toFixed(0) + " %");
    return `<tr class="${kpiClass(n, v)}"><td>${t.label}</td><td class="num">${shown}</td><td class="muted">${goal} (${t.src})</td></tr>`;
  });
  for (const n of COUNTS) if (n in k) rows.push(`<tr><td>${n.replace(/_/g, " ")}</td><td class="num">${k[n]}</td><td></td></tr>`);
  $("kpis").tBodies[0].innerHTML = rows.join("");
  const last = state.kpiHistory[state.kpiHistory.length - 1];
  if (!last || last.tick !== snap.tick) {
    state.kpiHistory.push({ tick: snap.tick, ...k });
    if (state.kpiHistory.length > HISTORY) state.kpiHistory.shift();
  }
  drawKpiChart();
}

function drawKpiChart() {
  const canvas = $("kpichart");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, hist = state.kpiHistory;
  g.clearRect(0, 0, w, h);
  const series = [["self_sufficiency", "#58c26b"], ["relationship_coverage", "#4d9bff"], ["on_time_rate", "#e6b740"]];
  for (const [name, colour] of series) {
    const goal = TARGETS[name].goal;
    g.strokeStyle = colour;
    g.globalAlpha = 0.35;
    g.setLineDash([4, 4]);
    g.beginPath(); g.moveTo(0, h - goal * h); g.lineTo(w, h - goal * h); g.stroke();
    g.setLineDash([]);
    g.globalAlpha = 1;
    g.beginPath();
    hist.forEach((p, i) => {
      const x = hist.length > 1 ? (i / (hist.length - 1)) * w : 0;
      const y = h - Math.max(0, Math.min(1, p[name] || 0)) * (h - 2) - 1;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

function renderExits(snap) {
  const emp = snap.employment || {};
  const pending = emp.pending || [];
  let html = `<div>exit queue ${pending.length}/${emp.queue_limit} · exits today ${emp.exits_today}/${emp.daily_exit_cap}</div>`;
  if (!pending.length) html += '<div class="muted">no exit requests</div>';
  for (const id of pending) {
    html += `<div>${esc(id)} <button data-act="approve" data-agent="${esc(id)}">approve</button> ` +
      `<button data-act="defer" data-agent="${esc(id)}">defer</button></div>`;
  }
  $("exits").innerHTML = html;
}

function renderBanner(snap) {
  const list = snap.perturbations || [];
  const el = $("banner");
  if (!list.length) { el.hidden = true; return; }
  el.hidden = false;
  el.textContent = list.map((p) => p.started > snap.tick
    ? `${p.name} (${p.kind}) starts in ${p.started - snap.tick} ticks`
    : `${p.name} (${p.kind}) x${p.magnitude}: ${p.ends - snap.tick} ticks left`).join(" · ");
}

function renderFeed(snap) {
  for (const n of snap.narrations || []) {
    const key = `n${n.tick}:${n.text}`;
    if (!state.seen.has(key)) { state.seen.add(key); feed(`${n.tick}  ${n.text}`, "narration"); }
  }
  for (const e of snap.events || []) {
    if (!FEED_EVENTS.has(e.event)) continue;
    const key = `e${e.tick}:${e.event}:${e.agent}:${e.other}`;
    if (!state.seen.has(key)) {
      state.seen.add(key);
      feed(`${e.tick}  ${e.event.replace(/_/g, " ")} ${e.agent || ""} ${e.other || ""}`.trim(), "event");
    }
  }
  if (state.seen.size > 5000) state.seen = new Set([...state.seen].slice(-1000));
}

function render() {
  const snap = state.snap;
  if (!snap) return;
  $("config").textContent = snap.config_id;
  $("tick").textContent = snap.tick;
  $("day").textContent = snap.day;
  drawMap();
  renderAgents(snap);
  renderKpis(snap);
  renderExits(snap);
  renderBanner(snap);
  renderFeed(snap);
  $("promotion").textContent = promotionText(snap.promotion);
}

// The snapshot's promotion summary in words (empty when the shard has no promotion manager).
function promotionText(p) {
  if (!p) return "";
  const parts = [`promotion: ${p.status}`, `release ${p.release}`, `shadow ${p.shadow || "none"}`,
    `pass streak ${p.pass_streak}/${p.required_passes}${p.candidate_ready ? " (candidate ready)" : ""}`];
  if (p.canary_until !== null && p.canary_until !== undefined) parts.push(`canary until tick ${p.canary_until}`);
  const e = p.last_event;
  if (e) parts.push(`last: ${e.event} at tick ${e.tick} to ${e.to}${e.reason ? ` (${e.reason})` : ""}`);
  return parts.join(" · ");
}

// -- start --------------------------------------------------------------------------------------------------

$("exits").addEventListener("click", async (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  const cmdId = `dashboard-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const r = await command("employment_exit", [b.dataset.act, b.dataset.agent], cmdId);
  if (r.status === "ok") feed(`ok employment_exit ${b.dataset.act} ${b.dataset.agent} [${cmdId}]`, "command");
  else feed(`${r.error.code}: ${r.error.message}${r.error.code === "unauthorized" || r.error.code === "forbidden" ? " (an admin token is needed)" : ""}`, "error");
});

$("token").value = token();
$("tokenform").addEventListener("submit", (ev) => ev.preventDefault());
$("token").addEventListener("change", () => {
  sessionStorage.setItem("townlet-token", $("token").value.trim());
  location.reload();
});

async function start() {
  const types = {};
  try {
    const r = await command("town_map");
    if (r.status !== "ok") { setStatus(`${r.error.code}: ${r.error.message}`, "down"); return; }
    state.town = r.result;
    for (const o of state.town.objects) types[o.type] = GLYPHS[o.type] || o.type[0];
    $("legend").textContent = Object.entries(types).map(([t, g]) => `${g} ${t.replace(/_/g, " ")}`).join(" · ") +
      " · red: out of service (blackout / water outage)";
  } catch (err) {
    setStatus(`cannot reach the shard: ${err}`, "down");
    return;
  }
  connect();
}

start();
