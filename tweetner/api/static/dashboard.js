// The tweetner dashboard: polls the HTTP API and draws tables and SVG bar charts. No libraries,
// no network beyond this server, so it works offline. Every value from the data goes in through
// textContent or setAttribute, never as markup (entity names are tweet text).
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.max(250, Number(params.get("refresh") || 2000));
  const SVG = "http://www.w3.org/2000/svg";
  const state = { label: null, labels: new Set(), selected: null, window: "15m" };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = tag === "svg" || ["rect", "text", "line", "title", "g"].includes(tag)
      ? document.createElementNS(SVG, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  async function getJSON(path) {
    const resp = await fetch(path, { cache: "no-store" });
    if (!resp.ok) {
      let detail = resp.statusText;
      try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(`${path.split("?")[0]}: ${resp.status} ${detail}`);
    }
    return resp.json();
  }

  function query(obj) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(obj)) if (v !== null && v !== undefined) q.set(k, v);
    return q.toString();
  }

  // --- charts --------------------------------------------------------------------------------
  function barChart(container, points, opts) {
    const width = 800, height = opts.height, pad = { l: 34, r: 6, t: 8, b: opts.axis ? 18 : 4 };
    const max = Math.max(1, ...points.map((p) => p.value));
    const total = points.reduce((s, p) => s + p.value, 0);
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none",
                            "data-total": total, "data-buckets": points.length, role: "img" });
    const plotW = width - pad.l - pad.r, plotH = height - pad.t - pad.b;
    const step = points.length ? plotW / points.length : plotW;
    svg.appendChild(el("line", { class: "axis", x1: pad.l, x2: width - pad.r,
                                 y1: pad.t + plotH, y2: pad.t + plotH }));
    svg.appendChild(el("text", { x: pad.l - 4, y: pad.t + 10, "text-anchor": "end" }, max));
    svg.appendChild(el("text", { x: pad.l - 4, y: pad.t + plotH, "text-anchor": "end" }, 0));
    points.forEach((p, i) => {
      const h = (p.value / max) * plotH;
      const bar = el("rect", { class: "bar", x: pad.l + i * step + step * 0.1, width: Math.max(1, step * 0.8),
                               y: pad.t + plotH - h, height: Math.max(0, h), "data-count": p.value });
      bar.appendChild(el("title", {}, `${p.label}: ${p.value}`));
      svg.appendChild(bar);
    });
    if (opts.axis && points.length) {
      svg.appendChild(el("text", { x: pad.l, y: height - 4 }, points[0].label));
      svg.appendChild(el("text", { x: width - pad.r, y: height - 4, "text-anchor": "end" },
                         points[points.length - 1].label));
    }
    container.replaceChildren(svg);
  }

  function timeLabel(iso, withDate) {
    const d = new Date(iso);
    const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return withDate ? `${d.toLocaleDateString()} ${hm}` : hm;
  }

  // --- entities ------------------------------------------------------------------------------
  function renderLabels() {
    const box = $("labels");
    const all = [null, ...[...state.labels].sort()];
    box.replaceChildren(...all.map((label) => {
      const b = el("button", { type: "button", role: "tab", "data-label": label || "",
                               "aria-selected": String(label === state.label) }, label || "all labels");
      b.addEventListener("click", () => { state.label = label; renderLabels(); refresh(); });
      return b;
    }));
  }

  function renderTable(id, rows, withScore) {
    const body = $(id).querySelector("tbody");
    if (!rows.length) {
      const cells = withScore ? 5 : 4;
      body.replaceChildren(el("tr", { class: "empty" }));
      body.firstChild.appendChild(el("td", { colspan: cells, class: "muted" }, "no entities in this window"));
      return;
    }
    body.replaceChildren(...rows.map((r, i) => {
      const tr = el("tr", { "data-entity": r.entity, "data-label": r.label });
      if (state.selected && state.selected.entity === r.entity && state.selected.label === r.label) {
        tr.classList.add("selected");
      }
      tr.appendChild(el("td", { class: "num" }, i + 1));
      tr.appendChild(el("td", { class: "entity" }, r.entity));
      tr.appendChild(el("td", {}, r.label));
      tr.appendChild(el("td", { class: "num count" }, r.count));
      if (withScore) tr.appendChild(el("td", { class: "num" }, r.score.toFixed(2)));
      tr.addEventListener("click", () => { state.selected = { entity: r.entity, label: r.label }; refresh(); });
      return tr;
    }));
  }

  // Trending needs a few mentions in the window to mean anything; fewer than `tweetner trends`
  // asks for, so a young stream shows some.
  const TRENDING_MIN_COUNT = 2;

  async function refreshEntities() {
    const base = { window: state.window, label: state.label, limit: 15 };
    const [top, trending] = await Promise.all([
      getJSON("trends?" + query(base)),
      getJSON("trends?" + query({ ...base, trending: true, min_count: TRENDING_MIN_COUNT })),
    ]);
    let changed = false;
    for (const r of [...top.rows, ...trending.rows]) {
      if (!state.labels.has(r.label)) { state.labels.add(r.label); changed = true; }
    }
    if (changed) renderLabels();
    renderTable("top", top.rows, false);
    renderTable("trending", trending.rows, true);
  }

  async function refreshTimeline() {
    const sel = state.selected;
    if (!sel) return;
    const data = await getJSON(`entities/${encodeURIComponent(sel.entity)}/timeline?` +
                               query({ label: sel.label, window: state.window }));
    if (state.selected !== sel) return; // another entity was clicked meanwhile
    const total = data.buckets.reduce((s, b) => s + b.count, 0);
    $("timeline-title").textContent = `${sel.entity} (${sel.label}): ${total} mentions, per ${data.bucket}`;
    $("timeline").setAttribute("data-entity", sel.entity);
    barChart($("timeline"), data.buckets.map((b) => ({
      label: timeLabel(b.bucket_start, data.bucket === "hour"), value: b.count })),
      { height: 200, axis: true });
  }

  // --- pipeline ------------------------------------------------------------------------------
  function figure(name, value, cls) {
    const div = el("div", { class: "figure" + (cls ? " " + cls : ""), "data-figure": name });
    div.appendChild(el("b", {}, value));
    div.appendChild(el("span", { class: "muted" }, name));
    return div;
  }

  const fmt = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

  async function refreshPipeline() {
    const p = await getJSON("pipeline");
    const s = p.store;
    const figs = [
      figure("tweets stored", s.tweets_stored),
      figure("stored last minute", s.stored_last_minute),
      figure("latency p50 / p95 (s)", `${fmt(s.latency_p50_s, 2)} / ${fmt(s.latency_p95_s, 2)}`),
    ];
    const dl = $("deadletters");
    if (p.kafka && p.kafka.reachable) {
      const k = p.kafka;
      figs.push(figure("ingested / s", fmt(k.ingested_per_s, 1)));
      figs.push(figure("tagged / s", fmt(k.tagged_per_s, 1)));
      for (const g of k.lag) figs.push(figure(`lag ${g.group}`, g.lag));
      figs.push(figure("dead letters", k.dead_letters_total, k.dead_letters_total ? "bad" : ""));
      const items = k.recent_dead_letters.map((d) => el("li", {}, `${d.stage}: ${d.reason}` +
                                                            (d.source ? ` (${d.source})` : "")));
      dl.replaceChildren(...(items.length ? [el("span", { class: "muted" }, "latest dead letters:"),
                                             el("ul")] : []));
      if (items.length) dl.lastChild.replaceChildren(...items);
    } else {
      const why = p.kafka ? p.kafka.error : "no Kafka configured: rates, lag and dead letters need a running pipeline";
      dl.replaceChildren(el("span", { class: "muted" }, why));
    }
    $("figures").replaceChildren(...figs);
    // Per-minute stored counts, zero-filled over the last 15 minutes.
    const now = Math.floor(Date.parse(p.at) / 60000);
    const byMinute = new Map(s.per_minute.map((r) => [Math.floor(Date.parse(r.minute) / 60000), r.stored]));
    const points = [];
    for (let m = now - 14; m <= now; m++) {
      points.push({ label: timeLabel(new Date(m * 60000).toISOString()), value: byMinute.get(m) || 0 });
    }
    barChart($("stored-chart"), points, { height: 70, axis: false });
  }

  // --- the loop ------------------------------------------------------------------------------
  let running = false;
  async function refresh() {
    if (running) return;
    running = true;
    try {
      await Promise.all([refreshEntities(), refreshPipeline(), refreshTimeline()]);
      $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
      $("status").classList.remove("bad");
    } catch (err) {
      $("status").textContent = `error: ${err.message}`;
      $("status").classList.add("bad");
    } finally {
      running = false;
    }
  }

  $("window").addEventListener("change", (e) => { state.window = e.target.value; refresh(); });
  renderLabels();
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
