// The operator page of `steelkd serve`: upload, overlay + legend + defect table, review, recent list,
// coil view. Plain browser JavaScript against the service's own JSON API; no build step, no external assets.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { model: null, current: null, drawing: false, start: null, box: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function status(text, isError = false) {
  const s = $("#status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new Error(body?.error || `${res.status} ${res.statusText}`);
  return body;
}

function colour(classId) {
  const c = state.model.colors[classId] || [128, 128, 128];
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function swatch(classId) {
  return el("span", { class: "swatch", style: `background:${colour(classId)}` });
}

async function loadModel() {
  state.model = await api("/v1/model");
  const m = state.model;
  $("#model-info").textContent = `${m.name} · ${m.version} · ${m.backend}` +
    (m.calibrated ? " · calibrated thresholds" : "") + (m.tile ? ` · tiles ${m.tile.join("x")}` : "");
  const legend = $("#legend");
  legend.replaceChildren(...m.class_names.slice(1).map((name, i) => el("span", {}, swatch(i + 1), name)));
  $("#draw-class").replaceChildren(...m.class_names.slice(1).map((n) => el("option", { value: n }, n)));
}

async function upload(file) {
  if (!file) return;
  const form = new FormData();
  form.append("image", file, file.name);
  const coil = $("#coil-id").value.trim();
  const pos = $("#position").value.trim();
  if (coil) form.append("coil_id", coil);
  if (pos) form.append("position_m", pos);
  status(`inspecting ${file.name}…`);
  try {
    const insp = await api("/v1/inspect", { method: "POST", body: form });
    status(`${file.name}: ${insp.defects.length} defect(s) in ${insp.latency_ms.toFixed(0)} ms`);
    show(insp);
    refreshLists();
  } catch (err) {
    status(`${file.name}: ${err.message}`, true);
  }
}

function show(insp) {
  state.current = insp;
  $("#insp-title").textContent = `${insp.filename || "image"} — ${insp.image.width}x${insp.image.height}` +
    (insp.coil_id ? ` — coil ${insp.coil_id}` : "") + (insp.position_m != null ? ` @ ${insp.position_m} m` : "");
  const reviewed = $("#show-reviewed").checked;
  $("#overlay").src = `${insp.links.overlay}?reviewed=${reviewed}&t=${Date.now()}`;
  $("#draw-toggle").disabled = false;
  const rows = insp.defects.map((d) => defectRow(insp, d));
  $("#defects tbody").replaceChildren(...rows);
  const totals = Object.entries(insp.totals).filter(([, t]) => t.count)
    .map(([name, t]) => `${name}: ${t.count} (${t.area} px)`);
  $("#totals").textContent = (totals.length ? totals.join(" · ") : "no defects") +
    (insp.reviewed ? " — reviewed" : "");
  for (const li of document.querySelectorAll("#recent li")) li.classList.toggle("active", li.dataset.id === insp.id);
}

function defectRow(insp, d) {
  const select = el("select", { class: "relabel", title: "relabel" },
    el("option", { value: "" }, "relabel…"),
    ...insp.class_names.slice(1).filter((n) => n !== d.class).map((n) => el("option", { value: n }, n)));
  select.addEventListener("change", () => select.value && review(d.n, "relabel", select.value));
  const actions = d.source === "model"
    ? [el("button", { class: "confirm", type: "button", onclick: () => review(d.n, "confirm") }, "confirm"), " ",
       el("button", { class: "reject", type: "button", onclick: () => review(d.n, "reject") }, "reject"), " ", select]
    : [el("button", { class: "reject", type: "button", onclick: () => review(d.n, "reject") }, "withdraw")];
  const cls = d.reviewed_class ? `${d.class} → ${d.reviewed_class}` : d.class;
  return el("tr", { "data-n": d.n, class: d.status },
    el("td", {}, d.n), el("td", {}, swatch(d.final_class ? insp.class_names.indexOf(d.final_class) : d.class_id), cls),
    el("td", {}, d.area), el("td", {}, d.box.join(",")), el("td", {}, d.score == null ? "—" : d.score.toFixed(3)),
    el("td", { class: `status st-${d.status}` }, d.source === "operator" && d.status === "added" ? "drawn" : d.status),
    el("td", {}, ...actions));
}

async function review(n, action, cls) {
  const insp = state.current;
  try {
    const body = { action };
    if (cls) body.class = cls;
    const updated = await api(`/v1/inspections/${insp.id}/defects/${n}/review`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    status(`defect ${n}: ${action}${cls ? " → " + cls : ""}`);
    show(updated);
    refreshCoil();
  } catch (err) {
    status(`defect ${n}: ${err.message}`, true);
  }
}

// ---------------------------------------------------------------------------- drawing a missed region
function imagePoint(ev) {
  const img = $("#overlay");
  const r = img.getBoundingClientRect();
  const sx = img.naturalWidth / r.width, sy = img.naturalHeight / r.height;
  const x = Math.min(Math.max(ev.clientX - r.left, 0), r.width), y = Math.min(Math.max(ev.clientY - r.top, 0), r.height);
  return { px: x, py: y, x: Math.round(x * sx), y: Math.round(y * sy) };
}

function setupDrawing() {
  const wrap = $("#image-wrap"), box = $("#draw-box");
  $("#draw-toggle").addEventListener("click", () => {
    state.drawing = !state.drawing;
    wrap.classList.toggle("drawing", state.drawing);
    $("#draw-toggle").textContent = state.drawing ? "Cancel drawing" : "Draw missed region";
    status(state.drawing ? "drag a box over the missed defect" : "");
  });
  wrap.addEventListener("mousedown", (ev) => {
    if (!state.drawing) return;
    ev.preventDefault();
    state.start = imagePoint(ev);
    Object.assign(box.style, { left: `${state.start.px}px`, top: `${state.start.py}px`, width: "0", height: "0" });
    box.hidden = false;
  });
  window.addEventListener("mousemove", (ev) => {
    if (!state.start) return;
    const p = imagePoint(ev), s = state.start;
    Object.assign(box.style, { left: `${Math.min(s.px, p.px)}px`, top: `${Math.min(s.py, p.py)}px`,
      width: `${Math.abs(p.px - s.px)}px`, height: `${Math.abs(p.py - s.py)}px` });
  });
  window.addEventListener("mouseup", async (ev) => {
    if (!state.start) return;
    const p = imagePoint(ev), s = state.start;
    state.start = null;
    box.hidden = true;
    const b = [Math.min(s.x, p.x), Math.min(s.y, p.y), Math.abs(p.x - s.x), Math.abs(p.y - s.y)];
    if (b[2] < 1 || b[3] < 1) return;
    try {
      const updated = await api(`/v1/inspections/${state.current.id}/boxes`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ class: $("#draw-class").value, box: b }) });
      $("#draw-toggle").click();
      status(`added a ${$("#draw-class").value} box ${b.join(",")}`);
      show(updated);
      refreshCoil();
    } catch (err) {
      status(`box: ${err.message}`, true);
    }
  });
}

// ---------------------------------------------------------------------------- recent list and coil view
async function refreshLists() {
  const recent = await api("/v1/inspections?limit=30");
  $("#recent").replaceChildren(...recent.map((i) => el("li", { "data-id": i.id, onclick: () => show(i) },
    `${i.filename || i.id.slice(0, 8)} — ${i.defects.length} defect(s)${i.reviewed ? " ✓" : ""}`,
    el("small", {}, `${i.created_at.replace("T", " ").slice(0, 19)}${i.coil_id ? " · coil " + i.coil_id : ""}`))));
  if (state.current) for (const li of $("#recent").children) li.classList.toggle("active", li.dataset.id === state.current.id);
  const coils = await api("/v1/coils");
  const sel = $("#coil-select"), keep = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "choose a coil"),
    ...coils.map((c) => el("option", { value: c.coil_id }, `${c.coil_id} (${c.inspections})`)));
  sel.value = keep || (coils[0] ? coils[0].coil_id : "");
  refreshCoil();
}

async function refreshCoil() {
  const id = $("#coil-select").value;
  if (!id) { $("#coil-chart").replaceChildren(); $("#coil-table thead").replaceChildren(); $("#coil-table tbody").replaceChildren(); return; }
  const coil = await api(`/v1/coils/${encodeURIComponent(id)}`);
  drawCoil(coil);
}

function drawCoil(coil) {
  const names = coil.class_names.slice(1), metres = coil.metres;
  const ns = "http://www.w3.org/2000/svg", W = 280, H = 170, pad = 24;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const last = metres.length ? metres[metres.length - 1].metre + 1 : 1;
  const max = Math.max(1, ...metres.map((m) => names.reduce((s, n) => s + m.classes[n].count, 0)));
  const bw = (W - 2 * pad) / last;
  const add = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); svg.append(e); return e; };
  add("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: "#667" });
  for (const m of metres) {
    let y = H - pad;
    names.forEach((n, i) => {
      const h = (m.classes[n].count / max) * (H - 2 * pad);
      if (h > 0) { y -= h; add("rect", { x: pad + m.metre * bw, y, width: Math.max(1, bw - 1), height: h, fill: colour(i + 1) }).append(Object.assign(document.createElementNS(ns, "title"), { textContent: `${m.metre} m: ${n} ${m.classes[n].count}` })); }
    });
  }
  add("text", { x: pad, y: H - 6, "font-size": 10 }).textContent = "0 m";
  add("text", { x: W - pad - 30, y: H - 6, "font-size": 10 }).textContent = `${last} m`;
  add("text", { x: 2, y: 12, "font-size": 10 }).textContent = `max ${max} defects/m`;
  $("#coil-chart").replaceChildren(svg);
  $("#coil-table thead").replaceChildren(el("tr", {}, el("th", {}, "m"), ...names.map((n, i) => el("th", {}, swatch(i + 1), n))));
  $("#coil-table tbody").replaceChildren(...metres.map((m) => el("tr", {}, el("td", {}, m.metre),
    ...names.map((n) => el("td", {}, m.classes[n].count ? `${m.classes[n].count} (${m.classes[n].area})` : "·")))));
}

// ---------------------------------------------------------------------------- wiring
function setup() {
  const drop = $("#drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); upload(ev.dataTransfer.files[0]); });
  $("#file").addEventListener("change", (ev) => { upload(ev.target.files[0]); ev.target.value = ""; });
  $("#show-reviewed").addEventListener("change", () => state.current && show(state.current));
  $("#coil-select").addEventListener("change", refreshCoil);
  setupDrawing();
}

setup();
loadModel().then(refreshLists).catch((err) => status(err.message, true));
