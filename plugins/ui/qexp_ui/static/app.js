/* qexp ui: charts, sorting without reload and live updates on top of server-rendered pages.
   Every page works without this file; it only adds to what the HTML already shows. */
(function () {
  "use strict";
  const $ = (s, r) => (r || document).querySelector(s);
  const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));
  const POLL_MS = 1000;          // a runs table with a RUNNING run asks for news every second
  const RUN_POLL_MS = 500;       // a RUNNING run's page twice a second (a point shows within 2 s of its log)
  const IDLE_POLL_MS = 15000;    // a runs table without one looks for new runs now and then
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"];

  function pageData() {
    const el = $("#page-data");
    return el ? JSON.parse(el.textContent) : {};
  }

  function duration(ms) {
    if (ms == null || ms < 0) return "—";
    let s = Math.floor(ms / 1000);
    if (s < 60) return ms < 10000 ? (ms / 1000).toFixed(1) + " s" : s + " s";
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return m + "m " + String(s).padStart(2, "0") + "s";
    let h = Math.floor(m / 60); m %= 60;
    if (h < 48) return h + "h " + String(m).padStart(2, "0") + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  // Plotly reads <b>, <br>, <a> ... in names, labels and tick texts as markup: every text from the store
  // (run names, params, metric keys) goes through this first and shows as typed
  function esc(v) {
    return String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // non-finite numbers come as the words "inf", "-inf", "NaN" (JSON has none of them)
  function num(v) {
    if (v === null || v === undefined) return "—";
    if (v === "inf" || v === "-inf" || v === "NaN") return v;
    const f = Number(v);
    if (!isFinite(f)) return String(v);
    if (Number.isInteger(f) && Math.abs(f) < 1e12) return String(f);
    if (Math.abs(f) >= 1e-4 && Math.abs(f) < 1e9) return String(Number(f.toPrecision(6)));
    return f.toExponential(4);
  }

  function tick() {
    const now = Date.now();
    $$(".elapsed[data-start]").forEach((el) => { el.textContent = duration(now - Number(el.dataset.start)); });
    $$("[data-heartbeat]").forEach((el) => {
      const prefix = el.classList.contains("heartbeat") ? "♥ " : "";
      el.textContent = prefix + duration(now - Number(el.dataset.heartbeat)) + " ago";
    });
  }

  // ---- charts --------------------------------------------------------------------------------
  const CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };

  function layout(extra) {
    return Object.assign({
      margin: { l: 55, r: 15, t: 10, b: 40 }, height: 250, showlegend: false,
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { size: 11 },
      xaxis: { automargin: true, gridcolor: "#eee" }, yaxis: { automargin: true, gridcolor: "#eee" },
    }, extra || {});
  }

  function plot(el, traces, lay) {
    if (!window.Plotly || !el) return;
    const l = layout(lay);
    el.style.height = l.height + "px";
    window.Plotly.react(el, traces, l, CONFIG);
    el.dataset.drawn = "1";
  }

  // +-inf points drawn as triangles on the edge of the finite values (they do not stretch the axis), NaN
  // points as crosses at the bottom; the line has a gap at each
  function nonFiniteMarks(p, x) {
    if (!p.flags) return [];
    const lo = p.min === null ? 0 : p.min;
    const hi = p.max === null ? 1 : p.max;
    const marks = { inf: { y: hi, symbol: "triangle-up" }, "-inf": { y: lo, symbol: "triangle-down" },
      NaN: { y: lo, symbol: "x-thin-open" } };
    return Object.keys(marks).map((word) => {
      const idx = p.flags.map((f, i) => (f === word ? i : -1)).filter((i) => i >= 0);
      return { x: idx.map((i) => x[i]), y: idx.map(() => marks[word].y), type: "scatter", mode: "markers",
        name: word, hovertemplate: word + " at %{x}<extra></extra>", cliponaxis: false,
        marker: { symbol: marks[word].symbol, size: 9, color: COLORS[1], line: { width: 1.5, color: COLORS[1] } } };
    }).filter((t) => t.x.length);
  }

  function xOf(p, mode) {
    return mode === "time" ? p.timestamps.map((t) => new Date(t)) : p.steps;
  }

  function lazily(elements, draw) {
    if (!("IntersectionObserver" in window)) { elements.forEach(draw); return; }
    const io = new IntersectionObserver((entries) => {
      entries.forEach((e) => { if (e.isIntersecting) { io.unobserve(e.target); draw(e.target); } });
    }, { rootMargin: "300px" });
    elements.forEach((el) => io.observe(el));
  }

  // ---- runs table: sort and page without reload, refresh live -------------------------------
  function initRuns() {
    const box = () => $("#runs-table");
    if (!box()) return;
    const colsKey = "qexp-ui-columns:" + new URLSearchParams(location.search).getAll("exp").sort().join(",");
    const b = box();
    if (b.dataset.chosen === "0" && !new URLSearchParams(location.search).has("col")) {
      const saved = localStorage.getItem(colsKey);
      if (saved) {
        const url = new URL(location.href);
        JSON.parse(saved).forEach((c) => url.searchParams.append("col", c));
        location.replace(url.toString());
        return;
      }
    }
    const colsForm = $("#columns-form");
    if (colsForm) {
      colsForm.addEventListener("submit", () => {
        const cols = $$("input[name=col]:checked", colsForm).map((i) => i.value);
        localStorage.setItem(colsKey, JSON.stringify(cols));
      });
    }
    // keys of runs beyond this page (the latest runs of the experiments), asked for when the chooser opens
    const chooser = $("details.columns");
    if (chooser && colsForm) {
      chooser.addEventListener("toggle", async () => {
        if (!chooser.open || chooser.dataset.more) return;
        chooser.dataset.more = "1";
        const q = new URLSearchParams();
        new URLSearchParams(location.search).getAll("exp").forEach((e) => q.append("exp", e));
        try {
          const r = await fetch("/api/keys?" + q.toString());
          if (!r.ok) return;
          const keys = await r.json();
          ["metrics", "params", "tags"].forEach((kind) => {
            const box = $('fieldset[data-kind="' + kind + '"]', colsForm);
            if (!box) return;
            const have = new Set($$("input[name=col]", box).map((i) => i.value));
            (keys[kind] || []).forEach((k) => {
              const id = kind + "." + k;
              if (have.has(id)) return;
              const label = document.createElement("label");
              label.className = "colpick more";
              const input = document.createElement("input");
              input.type = "checkbox"; input.name = "col"; input.value = id;
              label.append(input, " " + k);
              box.append(label);
              box.hidden = false;
            });
          });
        } catch (e) { /* the page's own keys stay */ }
      });
    }
    const reset = $("#reset-columns");
    if (reset) reset.addEventListener("click", () => localStorage.removeItem(colsKey));

    let busy = false;
    function fragmentUrl(url) {
      const u = new URL(url, location.href);
      u.searchParams.set("fragment", "1");
      return u.toString();
    }
    function signature(el) {
      const c = el.cloneNode(true);
      $$(".elapsed, .heartbeat", c).forEach((x) => x.remove());
      return c.innerHTML;
    }
    async function load(url, push) {
      if (busy && !push) return;
      busy = true;
      try {
        const r = await fetch(fragmentUrl(url), { headers: { Accept: "text/html" } });
        const tmp = document.createElement("div");
        tmp.innerHTML = await r.text();
        const fresh = $("#runs-table", tmp);
        const cur = box();
        if (!fresh || !cur) return;
        if (!push && signature(fresh) === signature(cur)) return;
        const checked = new Set($$("input[name=runs]:checked", cur).map((i) => i.value));
        $$("input[name=runs]", fresh).forEach((i) => { i.checked = checked.has(i.value); });
        cur.replaceWith(fresh);
        tick();
        if (push) history.pushState({ runs: url }, "", url);
      } catch (e) {
        /* a failed refresh keeps the table as it is; the next poll tries again */
      } finally {
        busy = false;
      }
    }
    document.addEventListener("click", (e) => {
      const a = e.target.closest("#runs-table a.sort, #runs-table .pager a");
      if (!a || e.ctrlKey || e.metaKey || e.shiftKey) return;
      e.preventDefault();
      load(a.href, true);
    });
    window.addEventListener("popstate", () => load(location.href, true));
    let last = Date.now();
    setInterval(() => {
      const b = box();
      if (document.hidden || !b) return;
      const wait = b.dataset.live === "1" ? POLL_MS : IDLE_POLL_MS;
      if (Date.now() - last < wait - 50) return;
      last = Date.now();
      load(b.dataset.url, false);
    }, POLL_MS);
  }

  // ---- one run: every metric as a chart, live while it runs ---------------------------------
  function initRun() {
    const d = pageData();
    const drawn = new Map();   // metric -> last payload
    const seen = {};           // metric -> latest value / count seen by the live poll
    let xmode = "step";
    const xsel = $("#xaxis");
    if (xsel) xsel.addEventListener("change", () => { xmode = xsel.value; drawn.forEach((p, k) => drawPayload(chartOf(k), p)); });

    function chartOf(key) {
      return $$(".metric-chart").find((el) => el.dataset.metric === key);
    }
    function drawPayload(el, p) {
      if (!el) return;
      const name = p.key;
      const single = p.n <= 1;
      const box = el.closest("figure");
      const scalars = $("#scalar-charts");
      if (single && scalars && box && box.parentElement !== scalars && !name.startsWith("system/")) {
        scalars.append(box);
        $("#scalar-section").hidden = false;
      }
      const x = xOf(p, xmode);
      if (single) {
        const words = (p.flags || []).map((f, i) => f || num(p.values[i]));
        plot(el, [{ x, y: p.values.map((v) => (v === null ? 0 : v)), type: "scatter", mode: "markers+text",
          text: words.length ? words : p.values.map(num), textposition: "middle right", name: esc(name),
          marker: { size: 9, color: COLORS[0] } }],
        { height: 110, margin: { l: 45, r: 10, t: 6, b: 22 }, xaxis: { visible: false }, yaxis: { gridcolor: "#eee", automargin: true } });
      } else {
        plot(el, [{ x, y: p.values, type: "scatter", mode: "lines", name: esc(name),
          line: { width: 1.5, color: COLORS[0] } }].concat(nonFiniteMarks(p, x)),
        { xaxis: { title: { text: xmode === "time" ? "time" : "step" }, gridcolor: "#eee", automargin: true } });
      }
      el.dataset.points = String(p.n);
      const row = $$("[data-metric-row]").find((r) => r.dataset.metricRow === name);
      if (row) {
        $(".latest", row).textContent = num(p.last);
        $(".min", row).textContent = num(p.min);
        $(".max", row).textContent = num(p.max);
        $(".n", row).textContent = p.n === p.shown ? String(p.n) : p.n + " (" + p.shown + " drawn)";
      }
    }
    async function draw(el) {
      const key = el.dataset.metric;
      const r = await fetch("/api/runs/" + d.run_id + "/metric?key=" + encodeURIComponent(key));
      if (!r.ok) return;
      const p = await r.json();
      drawn.set(key, p);
      drawPayload(el, p);
    }
    lazily($$(".metric-chart"), draw);

    if (d.backtest) {
      const c = d.backtest;
      plot($("#backtest-chart"), [
        { x: c.dates, y: c.excess_cost, name: "excess return with cost", line: { color: COLORS[1] } },
        { x: c.dates, y: c.excess, name: "excess return without cost", line: { color: COLORS[0], dash: "dot" } },
        { x: c.dates, y: c["return"], name: "strategy", line: { color: COLORS[2], width: 1 } },
        { x: c.dates, y: c.bench, name: "benchmark", line: { color: COLORS[7], width: 1 } },
      ], { height: 320, showlegend: true, legend: { orientation: "h" }, yaxis: { tickformat: ".1%", gridcolor: "#eee" } });
    }

    function addMetric(key) {
      const system = key.startsWith("system/");
      const holder = $(system ? "#system-charts" : "#metric-charts");
      const fig = document.createElement("figure");
      fig.className = "chart-box";
      const cap = document.createElement("figcaption");
      cap.textContent = key;
      const el = document.createElement("div");
      el.className = "chart metric-chart";
      el.dataset.metric = key;
      fig.append(cap, el);
      holder.append(fig);
      const none = $("#no-system");
      if (system && none) none.remove();
      if (!system) {
        const tr = document.createElement("tr");
        tr.dataset.metricRow = key;
        ["", "latest", "min", "max", "n"].forEach((cls, i) => {
          const td = document.createElement("td");
          if (i === 0) td.textContent = key; else td.className = "num " + cls;
          tr.append(td);
        });
        $("#metrics-table tbody").append(tr);
        const count = $("#metric-count");
        if (count) count.textContent = String($$("[data-metric-row]").length);
      }
      return el;
    }

    async function poll() {
      let live;
      try {
        const r = await fetch("/api/runs/" + d.run_id + "/live");
        if (!r.ok) return true;
        live = await r.json();
      } catch (e) { return true; }
      for (const key of live.metric_keys) {
        let el = chartOf(key);
        if (!el) el = addMetric(key);
        const stamp = JSON.stringify([live.metrics[key], (live.counts || {})[key]]);  // "NaN" and "inf" compare too
        if (seen[key] !== undefined && seen[key] !== stamp && (drawn.has(key) || !el.dataset.drawn)) draw(el);
        else if (seen[key] === undefined && !drawn.has(key)) draw(el);
        seen[key] = stamp;
      }
      const hb = $("#heartbeat-cell");
      if (hb && live.heartbeat) hb.innerHTML = '<span data-heartbeat="' + live.heartbeat + '"></span>';
      if (live.heartbeat) $$("#run-status [data-heartbeat]").forEach((el) => { el.dataset.heartbeat = live.heartbeat; });
      if (live.status !== d.status) {
        d.status = live.status;
        const cell = $("#status-cell");
        if (cell) cell.textContent = live.status;
        const badge = $("#run-status .badge");
        if (badge) { badge.textContent = live.status; badge.className = "badge " + live.status.toLowerCase(); }
        $$("#run-status .elapsed, #run-status .heartbeat").forEach((x) => x.remove());
        if (live.end_time) {
          const end = $("#end-cell");
          if (end) end.textContent = new Date(live.end_time).toLocaleString();
          const dur = $("#duration-cell");
          if (dur) dur.textContent = duration(live.end_time - live.start_time);
        }
        return false;   // ended: one last refresh done
      }
      tick();
      return live.status === "RUNNING";
    }
    if (d.status === "RUNNING") {
      const loop = async () => { if (document.hidden || await poll()) setTimeout(loop, RUN_POLL_MS); };
      setTimeout(loop, RUN_POLL_MS);
    }
    const search = $("#param-search");
    if (search) {
      search.addEventListener("input", () => {
        const q = search.value.toLowerCase();
        $$("#params-table tr").forEach((tr) => { tr.hidden = q && !tr.textContent.toLowerCase().includes(q); });
      });
    }
  }

  // ---- compare -------------------------------------------------------------------------------
  function parcoords(el, pc, height) {
    if (!pc || !pc.dimensions.length) return;
    const last = pc.dimensions[pc.dimensions.length - 1];
    const colorVals = pc.metric ? last.values.map((v) => (v === null ? NaN : v)) : null;
    const dims = pc.dimensions.map((dm) => {
      const label = dm.label.length > 28 ? "…" + dm.label.slice(-27) : dm.label;
      const o = { label: esc(label), values: dm.values.map((v) => (v === null ? NaN : v)) };
      if (dm.tickvals) { o.tickvals = dm.tickvals; o.ticktext = dm.ticktext.map(esc); }
      return o;
    });
    const line = colorVals ? { color: colorVals, colorscale: "Viridis", showscale: true, colorbar: { title: { text: esc(pc.metric) } } } : { color: COLORS[0] };
    plot(el, [{ type: "parcoords", line, dimensions: dims }], { height: height || 380, margin: { l: 70, r: 70, t: 50, b: 25 } });
  }

  function initCompare() {
    const d = pageData();
    const ids = d.runs.map((r) => r.run_id);
    const nameOf = {};
    d.runs.forEach((r) => { nameOf[r.run_id] = r.name; });
    const diff = $("#diff-only");
    if (diff) {
      diff.addEventListener("change", () => {
        $$("#params-compare tr.same").forEach((tr) => { tr.hidden = diff.checked; });
        $("#params-compare").classList.toggle("diff-only", diff.checked);
      });
    }
    lazily($$(".compare-chart"), async (el) => {
      const q = new URLSearchParams();
      ids.forEach((i) => q.append("runs", i));
      q.set("key", el.dataset.metric);
      const r = await fetch("/api/compare/metric?" + q.toString());
      if (!r.ok) return;
      const p = await r.json();
      if (p.series.every((x) => x.n <= 1)) {
        const box = el.closest("figure");
        if (box) box.remove();
        const note = $("#single-note");
        if (note) { note.hidden = false; const c = $("#single-count"); c.textContent = String(Number(c.textContent) + 1); }
        return;
      }
      plot(el, p.series.map((s, i) => ({ x: s.steps, y: s.values, name: esc(s.name), type: "scatter",
        mode: s.n > 1 ? "lines" : "markers", line: { width: 1.5, color: COLORS[i % COLORS.length] } })),
      { showlegend: p.series.length <= 10, legend: { orientation: "h" }, height: 270 });
    });
    const bt = d.backtests || {};
    const btIds = ids.filter((i) => bt[i]);
    if (btIds.length) {
      const traces = [];
      btIds.forEach((id, i) => {
        const c = bt[id];
        const color = COLORS[i % COLORS.length];
        const who = esc(nameOf[id]) + " " + id.slice(0, 6);
        traces.push({ x: c.dates, y: c.excess_cost, name: who + " (with cost)", line: { color } });
        traces.push({ x: c.dates, y: c.excess, name: who + " (without cost)", line: { color, dash: "dot" } });
      });
      plot($("#backtest-compare"), traces, { height: 360, showlegend: true, legend: { orientation: "h" },
        yaxis: { tickformat: ".1%", gridcolor: "#eee" } });
    }
    if (d.parcoords) parcoords($("#compare-parcoords"), d.parcoords);
    const sc = d.scatter;
    if (sc && sc.params.length && sc.metrics.length) {
      const ps = $("#scatter-param");
      const ms = $("#scatter-metric");
      sc.params.forEach((p) => ps.add(new Option(p, p)));
      sc.metrics.forEach((m) => ms.add(new Option(m, m, m === sc.objective, m === sc.objective)));
      const drawScatter = () => {
        const p = ps.value;
        const m = ms.value;
        const x = sc.points.map((pt) => { const v = pt.params[p]; const f = Number(v); return v !== undefined && isFinite(f) ? f : v; });
        const xs = x.map((v) => (typeof v === "string" ? esc(v) : v));
        plot($("#compare-scatter"), [{ x: xs, y: sc.points.map((pt) => pt.metrics[m]), text: sc.points.map((pt) => esc(pt.name || pt.run_id.slice(0, 8))),
          mode: "markers", type: "scatter", marker: { size: 9, color: COLORS[0] } }],
        { height: 320, xaxis: { title: { text: esc(p) }, gridcolor: "#eee" }, yaxis: { title: { text: esc(m) }, gridcolor: "#eee" } });
      };
      ps.addEventListener("change", drawScatter);
      ms.addEventListener("change", drawScatter);
      drawScatter();
    }
  }

  // ---- sweep and rolling ---------------------------------------------------------------------
  function initSweep() {
    const d = pageData();
    const trials = d.trials.filter((t) => t.value !== null);
    const best = [];
    let cur = null;
    trials.forEach((t) => {
      if (cur === null || (d.goal === "minimize" ? t.value < cur : t.value > cur)) cur = t.value;
      best.push(cur);
    });
    plot($("#sweep-objective"), [
      { x: trials.map((t) => t.number), y: trials.map((t) => t.value), mode: "markers", type: "scatter", name: esc(d.objective || ""),
        marker: { size: 8, color: COLORS[0] }, text: trials.map((t) => esc(t.state)) },
      { x: trials.map((t) => t.number), y: best, mode: "lines", type: "scatter", name: "best so far", line: { shape: "hv", color: COLORS[1] } },
    ], { height: 300, xaxis: { title: { text: "trial" }, gridcolor: "#eee" }, yaxis: { title: { text: esc(d.objective || "") }, gridcolor: "#eee" } });
    const imp = Object.entries(d.importance || {});
    if (imp.length) {
      imp.reverse();
      plot($("#sweep-importance"), [{ type: "bar", orientation: "h", x: imp.map((e) => e[1]), y: imp.map((e) => esc(e[0])),
        marker: { color: COLORS[2] } }], { height: 300, margin: { l: 200, r: 15, t: 10, b: 35 } });
    }
    parcoords($("#sweep-parcoords"), d.parcoords, 420);
  }

  function initRolling() {
    const d = pageData();
    const wins = d.windows || [];
    const DAY = 86400000;
    const spans = wins.filter((w) => w.start && w.end).map((w) => new Date(w.end) - new Date(w.start));
    const typical = spans.length ? spans.sort((a, b) => a - b)[Math.floor(spans.length / 2)] : 60 * DAY;
    // the last window's test segment may be open (to the end of the data): drawn as long as a typical one
    const dated = wins.filter((w) => w.start && (w.end || w.open_end));
    if (dated.length) {
      plot($("#rolling-timeline"), [{ type: "bar", orientation: "h", base: dated.map((w) => w.start),
        x: dated.map((w) => (w.end ? new Date(w.end) - new Date(w.start) : typical)), y: dated.map((w) => "window " + w.index),
        marker: { color: dated.map((w, i) => COLORS[i % COLORS.length]) }, text: dated.map((w) => w.start + " → " + (w.end || "open")),
        textposition: "inside", insidetextanchor: "middle", textfont: { color: "#fff" }, hoverinfo: "text" }], { height: 300, xaxis: { type: "date", gridcolor: "#eee" }, yaxis: { autorange: "reversed" } });
    }
    const withIc = wins.filter((w) => w.ic !== null);
    if (withIc.length) {
      const x = withIc.map((w) => "window " + w.index);
      const traces = [{ type: "bar", x, y: withIc.map((w) => w.ic), name: "IC per window", marker: { color: COLORS[0] } }];
      if (typeof d.combined_ic === "number") {
        traces.push({ type: "scatter", mode: "lines", x, y: x.map(() => d.combined_ic), name: "combined IC",
          line: { color: COLORS[1], dash: "dash" } });
      }
      plot($("#rolling-ic"), traces, { height: 300, showlegend: true, legend: { orientation: "h" } });
    }
  }

  // ---- everywhere ----------------------------------------------------------------------------
  function initCommon() {
    $$("button.copy[data-copy]").forEach((b) => {
      b.addEventListener("click", async () => {
        const text = $(b.dataset.copy).textContent;
        try { await navigator.clipboard.writeText(text); b.textContent = "copied"; } catch (e) {
          const r = document.createRange(); r.selectNodeContents($(b.dataset.copy));
          const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); b.textContent = "selected: press Ctrl-C";
        }
      });
    });
    $$("select[data-autosubmit]").forEach((s) => s.addEventListener("change", () => s.form.submit()));
    const del = $("#delete-form");
    if (del) del.addEventListener("submit", (e) => { if (!confirm("Delete this run?")) e.preventDefault(); });
    setInterval(tick, 1000);
  }

  function init() {
    initCommon();
    const page = document.body.dataset.page;
    const run = { runs: initRuns, run: initRun, compare: initCompare, sweep: initSweep, rolling: initRolling }[page];
    if (run) run();
    document.body.dataset.ready = "1";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
