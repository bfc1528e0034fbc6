// gridledger dashboard: draws the page its path names from the node's JSON API.
//
// Pages: /  /relay/{id}  /explorer  /block/{height|id}  /reading/{relay}/{minute}.
// Nothing is loaded from another host; uPlot (MIT, ui/vendor) only on relay pages.
// Values from the node are only ever put in the page as text (textContent), never as HTML.
// `window.gl` holds what the browser tests read back: ready, error, charts, data, proof.
"use strict";
(() => {
  const gl = (window.gl = { ready: false, error: null, page: null, charts: [], data: null, faults: [], firstChartMs: null, readyMs: null, proof: null });
  const $ = (id) => document.getElementById(id);

  // ---------- helpers ----------
  function h(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat(Infinity)) if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const link = (href, text, cls) => h("a", { href, class: cls }, text);
  const short = (hex, n = 12) => (hex ? hex.slice(0, n) + "…" : "—");
  const utc = (ms) => new Date(ms).toISOString().replace(".000Z", "Z").replace("T", " ");
  const minuteUtc = (m) => new Date(m * 60000).toISOString().slice(0, 16) + "Z";
  const nowMinute = () => Math.floor(Date.now() / 60000);
  function table(head, body) {
    return h("table", null, h("thead", null, h("tr", null, head.map((c) => h("th", null, c)))), body);
  }
  function row(cells) {
    return h("tr", null, cells.map((c) => h("td", null, c)));
  }
  function setError(msg) {
    $("err").textContent = msg || "";
  }
  async function get(path) {
    const r = await fetch(path, { headers: { accept: "application/json" } });
    let body = null;
    try {
      body = await r.json();
    } catch (_) {
      /* not JSON */
    }
    if (!r.ok) throw new Error((body && body.error) || path + ": HTTP " + r.status);
    return body;
  }
  async function getText(path) {
    const r = await fetch(path);
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.text();
  }
  function metric(text, name) {
    const m = text.match(new RegExp("^" + name + " (\\S+)$", "m"));
    return m ? m[1] : "?";
  }
  function loadScript(src) {
    return new Promise((ok, fail) => {
      const s = h("script", { src });
      s.onload = ok;
      s.onerror = () => fail(new Error("cannot load " + src));
      document.head.append(s);
    });
  }
  function loadCss(href) {
    document.head.append(h("link", { rel: "stylesheet", href }));
  }
  function done(err) {
    if (gl.readyMs == null) gl.readyMs = Math.round(performance.now());
    if (err) {
      gl.error = String(err.message || err);
      setError(gl.error);
    }
    gl.ready = true;
  }
  // A minute from a query parameter: minutes since 1970 or YYYY-MM-DDTHH:MM[Z].
  function parseMinute(s) {
    if (s == null || s === "") return null;
    if (/^\d+$/.test(s)) return Number(s);
    const m = s.match(/^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})Z?$/);
    if (!m) return NaN;
    return Math.floor(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) / 60000);
  }

  // ---------- overview ----------
  async function overview() {
    const card = (id, label) => h("div", { class: "card" }, label, h("b", { id }, "…"));
    $("app").replaceChildren(
      h("h1", null, "Overview"),
      h("div", { class: "grid" },
        card("height", "height"), card("records", "records on chain"), card("mempool", "mempool"),
        card("peersup", "peers up / down"), card("disputes", "disputed records"),
        card("refused", "refused blocks / witness conflicts"), card("reorgs", "reorgs / side blocks"),
        card("mined", "mined / received"), card("final", "final height / blocks above")),
      h("p", { class: "mono break" }, "tip ", h("a", { id: "tip" })),
      h("section", { id: "finalitybox" },
        h("h2", null, "Finality"),
        h("p", { id: "safety", class: "down", hidden: true }),
        h("p", { id: "finalsays" }),
        h("p", { id: "finalwait", class: "muted", hidden: true }),
        h("p", { id: "finalrefused", class: "down", hidden: true }),
        h("p", { id: "finaloffences", class: "down", hidden: true }),
        h("p", { class: "muted" }, "Why it can be trusted: each member's node cosigns a checkpoint of the chain (a C2SP signed note, ",
          link("/checkpoint", "/checkpoint"), ") only for blocks it validated and whose records agree with its own reads; a block cosigned by a quorum of the members (",
          link("/members", "/members"), ") is final, and no node reorganises below it, whatever the work of another chain. Two conflicting final blocks would need more than a third of the members to sign two conflicting votes, which every node keeps as evidence (",
          link("/evidence", "/evidence"), ").")),
      h("p", { id: "sync", hidden: true }),
      h("h2", null, "Relays this node polls"),
      table(["relay", "address", "state", "last minute", "records", "missed minutes", "last error / clock"], h("tbody", { id: "relays" })),
      h("section", { id: "disputebox", hidden: true },
        h("h2", null, "Disputed records"),
        h("p", { class: "muted" }, "The chain holds these records, but this node read something else from the relay for the same minute (",
          link("/disputes", "/disputes"), ")."),
        table(["relay", "minute", "block", "on the chain (P kW, f Hz, faults)", "read by this node"], h("tbody", { id: "disputelist" }))),
      h("h2", null, "Latest blocks"),
      table(["height", "id", "time (UTC)", "miner", "records"], h("tbody", { id: "blocks" })),
      h("h2", null, "Peers"),
      table(["peer", "state", "TLS subject", "last error"], h("tbody", { id: "peers" })),
      h("p", { class: "muted note" }, "Updates every 2 s. The dashboard only reads: adding or removing a peer is an admin call, which a node refuses to web pages. From the node's host: ",
        h("code", null, "curl -X POST -H 'content-type: application/json' -d '{\"url\":\"http://host:port\"}' " + location.origin + "/peers")));
    await tick();
    done();
    setInterval(() => tick().catch(() => {}), 2000);
  }

  const brief = (r) => {
    const x = r.samples[r.samples.length - 1] || {};
    return x.P_kW + " kW, " + x.f_Hz + " Hz, faults " + r.faults;
  };

  async function tick() {
    try {
      const [s, m, p, f] = await Promise.all([get("/status"), getText("/metrics"), get("/peers"), get("/forks")]);
      $("net").textContent = "network " + s.network + " · " + s.difficulty_bits + " bits";
      $("height").textContent = s.height;
      $("records").textContent = s.records;
      $("mempool").textContent = s.mempool;
      const tip = $("tip");
      tip.textContent = s.tip;
      tip.href = "/block/" + s.tip;
      $("mined").textContent = metric(m, "gridledger_blocks_mined_total") + " / " + metric(m, "gridledger_blocks_received_total");
      $("refused").textContent = metric(m, "gridledger_blocks_rejected_total") + " / " + metric(m, "gridledger_witness_conflicts_total");
      $("reorgs").textContent = f.reorgs_total + " / " + f.side_blocks.length;
      const fin = s.finality || { on: false, says: "" };
      gl.finality = fin;
      $("final").textContent = fin.on ? fin.final_height + " / " + fin.lag_blocks : "not final";
      $("finalsays").textContent = (fin.on ? "" : "History here is NOT final: ") + fin.says + ".";
      $("finalsays").className = fin.on ? "up" : "down";
      $("safety").hidden = !fin.safety_failure;
      $("safety").textContent = fin.safety_failure ? "SAFETY FAILURE: " + fin.safety_failure : "";
      $("finalwait").hidden = !fin.waiting_since_ms;
      if (fin.waiting_since_ms) {
        $("finalwait").textContent = "Blocks above height " + fin.final_height + " wait for a quorum since " + utc(fin.waiting_since_ms) +
          " (" + Math.round((Date.now() - fin.waiting_since_ms) / 1000) + " s; more than a third of the members down or cut off stops finality, not the chain).";
      }
      $("finalrefused").hidden = !fin.refused_below_final;
      if (fin.refused_below_final) {
        $("finalrefused").textContent = fin.refused_below_final + " blocks refused for forking below the final block (an attempt to rewrite final history), the last at " +
          utc(fin.refused_below_final_last_ms) + ".";
      }
      $("finaloffences").hidden = !fin.offences;
      if (fin.offences) $("finaloffences").textContent = fin.offences + " members' offences (two conflicting signed votes) found: see /evidence.";
      const sync = $("sync");
      sync.hidden = !s.sync;
      if (s.sync) {
        const y = s.sync;
        sync.className = y.active ? "up" : "muted";
        sync.textContent = y.active
          ? "Syncing from " + y.peer + ": height " + y.height + " of " + y.target + ", " + y.blocks_per_s + " blocks/s, about " + y.eta_secs + " s left"
          : "Last sync from " + y.peer + ": " + (y.height - y.from) + " blocks, to height " + y.height;
      }
      const relays = $("relays");
      relays.replaceChildren();
      for (const r of s.relays) {
        relays.append(row([
          r.relay_id != null ? link("/relay/" + r.relay_id, "relay " + r.relay_id) : "—",
          h("span", { class: "mono" }, r.relay),
          h("span", { class: r.up ? "up" : "down" }, r.up ? "up" : "down"),
          r.last_minute != null ? link("/reading/" + r.relay_id + "/" + r.last_minute, r.last_minute_utc) : "—",
          r.records, r.missed_minutes,
          [r.last_error, r.clock_problem].filter(Boolean).join("; ")]));
      }
      if (!s.relays.length) relays.append(row(["(none configured)", "", "", "", "", "", ""]));
      $("disputes").textContent = s.disputes.open + (s.disputes.total > s.disputes.open ? " (" + s.disputes.total + " found)" : "");
      $("disputebox").hidden = s.disputes.open === 0;
      const dl = $("disputelist");
      dl.replaceChildren();
      for (const d of s.disputes.latest) {
        dl.append(row([d.relay, link("/reading/" + d.relay + "/" + d.minute, d.minute_utc),
          link("/block/" + d.block_id, d.height + " " + short(d.block_id), "mono"), brief(d.on_chain), brief(d.read)]));
      }
      const blocks = await get("/blocks?from=" + Math.max(0, s.height - 9) + "&limit=10");
      relayNav(s.relays, blocks);
      const tb = $("blocks");
      tb.replaceChildren();
      for (const b of blocks.reverse()) {
        const recs = b.records.map((r) => link("/reading/" + r.relay + "/" + r.minute, "relay " + r.relay + " @ " + r.minute_utc));
        const isFinal = fin.on && b.height <= fin.final_height;
        tb.append(row([h("span", null, link("/block/" + b.height, String(b.height)), isFinal ? h("span", { class: "tag" }, " final") : null),
          link("/block/" + b.id, short(b.id, 16), "mono"),
          b.time_ms ? utc(b.time_ms) : "—", h("span", { class: "mono" }, short(b.miner)),
          recs.length ? recs.flatMap((a, i) => (i ? [", ", a] : [a])) : "(genesis)"]));
      }
      const health = {};
      for (const x of p.health || []) health[x.url] = x;
      let up = 0;
      const pb = $("peers");
      pb.replaceChildren();
      for (const url of p.peers) {
        const x = health[url];
        const state = x ? x.state : "not tried yet";
        if (state === "ok") up += 1;
        // Only an http(s) URL becomes a link (a node refuses others, but the page does not rely on it).
        pb.append(row([/^https?:\/\//.test(url) ? link(url + "/", url) : url, h("span", { class: state === "ok" ? "up" : "down" }, state),
          (x && x.tls_subject) || "", (x && x.last_error) || ""]));
      }
      if (!p.peers.length) pb.append(row(["(no peers)", "", "", ""]));
      $("peersup").textContent = up + " / " + (p.peers.length - up);
      setError("");
    } catch (e) {
      setError("cannot reach the node: " + e.message);
    }
  }

  // Links to the relays this node polls and those in the latest blocks.
  function relayNav(relays, blocks) {
    const nav = $("relaynav");
    const seen = relays.map((r) => r.relay_id).filter((x) => x != null);
    for (const b of blocks || []) for (const r of b.records) seen.push(r.relay);
    const ids = [...new Set(seen)].sort((a, b) => a - b).slice(0, 16);
    if (nav.dataset.ids === ids.join(",")) return;
    nav.dataset.ids = ids.join(",");
    nav.replaceChildren(...ids.map((id) => link("/relay/" + id, "Relay " + id)));
  }

  // ---------- relay page ----------
  const GROUPS = [
    { title: "Phase-to-phase voltage", unit: "kV", test: (c) => c.startsWith("V") },
    { title: "Line current", unit: "A", test: (c) => c.startsWith("I") },
    { title: "Frequency", unit: "Hz", test: (c) => c.startsWith("f") },
    { title: "Power factor", unit: "", test: (c) => c === "PF" },
    { title: "Active and reactive power", unit: "kW, kvar", test: (c) => c.startsWith("P_") || c.startsWith("Q_") },
  ];
  const COLORS = ["#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e"];
  const RANGES = { hour: 60, day: 1440, week: 7 * 1440 };

  async function relayPage(relay) {
    const q = new URLSearchParams(location.search);
    let to = parseMinute(q.get("to"));
    let from = parseMinute(q.get("from"));
    const range = q.get("range") || (from == null && to == null ? "hour" : null);
    const status = await get("/status");
    $("net").textContent = "network " + status.network + " · " + status.difficulty_bits + " bits";
    relayNav(status.relays);
    if (to == null) {
      // Up to the relay's latest minute if this node polls it (a relay whose clock runs
      // behind, like the demo's compressed one, still shows its last hour), else now.
      const polled = status.relays.find((r) => r.relay_id === relay && r.last_minute != null);
      to = polled ? polled.last_minute : nowMinute();
    }
    if (from == null) from = to - (RANGES[range] || 60) + 1;
    const app = $("app");
    const mk = (r) => h("button", { type: "button", class: range === r ? "on" : null, onclick: () => go({ range: r }) }, r);
    const fromIn = h("input", { id: "from", value: minuteUtc(from), "aria-label": "from (UTC)" });
    const toIn = h("input", { id: "to", value: minuteUtc(to), "aria-label": "to (UTC)" });
    const csv = h("a", { id: "csv", download: "relay-" + relay + ".csv" }, "Download the visible range (CSV)");
    app.replaceChildren(
      h("h1", null, "Relay " + relay),
      h("div", { class: "controls" }, "Last", mk("hour"), mk("day"), mk("week"), h("span", { class: "muted" }, "or from"), fromIn, "to", toIn,
        h("button", { type: "button", onclick: () => go({ from: fromIn.value, to: toIn.value }) }, "Show"), csv),
      h("p", { id: "summary", class: "muted" }, "Loading…"),
      h("div", { id: "charts" }),
      h("h2", null, "Fault openings"),
      h("ul", { id: "faultlist" }));
    function go(params) {
      const u = new URLSearchParams(params);
      location.search = u.toString();
    }
    if (Number.isNaN(from) || Number.isNaN(to)) throw new Error("from and to must be minutes since 1970 or YYYY-MM-DDTHH:MMZ");
    loadCss("/ui/uPlot.min.css");
    const width = Math.max(320, Math.min(1400, app.clientWidth - 10));
    // About one point per pixel; `?points=` overrides (100 to 20 000).
    const asked = Number(q.get("points"));
    const points = asked ? Math.max(100, Math.min(20000, asked)) : Math.max(100, Math.min(4000, width));
    const columns = (f, t) => get("/readings?relay=" + relay + "&from=" + f + "&to=" + t + "&format=columns&points=" + points);
    const [data] = await Promise.all([columns(from, to), window.uPlot ? null : loadScript("/ui/uPlot.iife.min.js")]);
    gl.data = data;
    gl.faults = data.faults.map((f) => f.t);
    const summary = (d) => {
      const held = d.t.length - d.series[0].filter((v) => v === null).length;
      $("summary").textContent =
        d.records + " records, " + d.samples + " samples from " + minuteUtc(d.from) + " to " + minuteUtc(d.to) + " (UTC)" +
        (d.bucket_s ? "; each point is the mean over " + d.bucket_s + " s (" + held + " points): zoom in for every sample" : "; every sample drawn") +
        "; " + d.gaps.length + " gap" + (d.gaps.length === 1 ? "" : "s") + ", " + d.faults.length + " minute" + (d.faults.length === 1 ? "" : "s") + " with fault openings" +
        (d.disputed.length ? "; " + d.disputed.length + " disputed" : "") +
        "; " + (d.signed_by_relay === d.records && d.records > 0
          ? "every record signed by the relay's registered key"
          : d.signed_by_relay + " of " + d.records + " records signed by the relay's registered key (the others unsigned: see a reading's proof)") +
        ". Drag to zoom, double-click to reset.";
    };
    summary(data);
    const setCsv = (a, b) => {
      const f = Math.max(data.from, Math.floor(a / 60));
      const t = Math.min(data.to, Math.floor(b / 60));
      csv.href = "/readings?relay=" + relay + "&from=" + f + "&to=" + Math.max(f, t) + "&format=csv";
      csv.download = "relay-" + relay + "-" + minuteUtc(f).replace(/:/g, "") + ".csv";
    };
    setCsv(data.from * 60, data.to * 60 + 59);
    const fl = $("faultlist");
    for (const f of data.faults) {
      fl.append(h("li", null, link("/reading/" + relay + "/" + f.minute, minuteUtc(f.minute)), ": " + f.count + " opening" + (f.count > 1 ? "s" : "") + " (block " + f.height + ")"));
    }
    if (!data.faults.length) fl.append(h("li", { class: "muted" }, "none in this range"));
    if (!data.records) {
      $("charts").append(h("p", null, "No record of relay " + relay + " on the chain in this range."));
      return;
    }
    // A zoom into averaged points fetches the zoomed minutes again, at full resolution
    // once they hold few enough samples; a reset shows the whole range again.
    let shown = data;
    let timer = null;
    const show = (d, reset) => {
      shown = d;
      gl.data = d;
      for (const c of gl.charts) c.setData([d.t].concat(c.glColumns.map((i) => d.series[i])), reset);
      summary(d);
    };
    const zoom = {
      changed(min, max) {
        setCsv(min, max);
        clearTimeout(timer);
        if (!data.bucket_s) return;
        timer = setTimeout(async () => {
          // The whole range (as drawn at first, or after a reset): nothing to fetch.
          if (min <= data.t[0] && max >= data.t[data.t.length - 1]) return;
          const f = Math.max(data.from, Math.floor(min / 60));
          const t = Math.min(data.to, Math.floor(max / 60));
          if (shown !== data && f >= shown.from && t <= shown.to && !shown.bucket_s) return;
          try {
            const d = await columns(f, t);
            show(d, false);
          } catch (e) {
            setError("cannot load the zoomed range: " + e.message);
          }
        }, 250);
      },
      reset() {
        clearTimeout(timer);
        if (shown !== data) show(data, true);
        else for (const c of gl.charts) c.setScale("x", { min: data.t[0], max: data.t[data.t.length - 1] });
        setCsv(data.from * 60, data.to * 60 + 59);
      },
    };
    drawCharts(data, width, zoom);
  }

  function drawCharts(data, width, zoom) {
    const box = $("charts");
    const tz = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
    // 24-hour UTC times on the axis (with the date over a day's span) and in the legend.
    const long = data.to - data.from >= 1440;
    const tick = uPlot.fmtDate(long ? "{MM}-{DD} {HH}:{mm}" : "{HH}:{mm}");
    const full = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}");
    let syncing = false;
    const gapSpans = data.gaps.map(([a, b]) => [a * 60, b * 60 + 60]);
    const marks = {
      hooks: {
        drawClear: [(u) => {
          // Gap minutes shaded, so a missing minute reads as missing, not as a flat line.
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = "rgba(120,120,120,0.12)";
          for (const [a, b] of gapSpans) {
            const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
            ctx.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
          }
          ctx.restore();
        }],
        draw: [(u) => {
          // Fault openings: a red line at their minute on every chart.
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#d0021b";
          ctx.fillStyle = "#d0021b";
          ctx.lineWidth = 2;
          ctx.setLineDash([5, 3]);
          ctx.font = 11 * devicePixelRatio + "px sans-serif";
          for (const f of data.faults) {
            const x = u.valToPos(f.t, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillText("fault ×" + f.count, x + 3, u.bbox.top + 12 * devicePixelRatio);
          }
          ctx.restore();
        }],
        setScale: [(u, key) => {
          if (key !== "x" || syncing) return;
          syncing = true;
          const { min, max } = u.scales.x;
          for (const c of gl.charts) if (c !== u) c.setScale("x", { min, max });
          syncing = false;
          zoom.changed(min, max);
        }],
      },
    };
    for (const g of GROUPS) {
      const idx = data.columns.map((c, i) => (g.test(c) ? i : -1)).filter((i) => i >= 0);
      if (!idx.length) continue;
      const el = h("div", { class: "chart" }, h("h3", null, g.title + (g.unit ? " (" + g.unit + ")" : "")));
      box.append(el);
      const opts = {
        width,
        height: 200,
        tzDate: tz,
        cursor: {
          sync: { key: "gl" },
          // Double-click: the whole range again (not just the zoomed data's extent).
          bind: { dblclick: () => () => { zoom.reset(); return null; } },
        },
        scales: { x: { time: true } },
        series: [{ label: "time (UTC)", value: (u, v) => (v == null ? "--" : full(tz(v))) }].concat(idx.map((i, k) => ({
          label: data.columns[i], stroke: COLORS[k % COLORS.length], width: 1.5, spanGaps: false, points: { show: data.t.length < 400 },
        }))),
        axes: [{ values: (u, splits) => splits.map((v) => tick(tz(v))) }, { size: 60 }],
        plugins: [marks],
      };
      const chart = new uPlot(opts, [data.t].concat(idx.map((i) => data.series[i])), el);
      chart.glColumns = idx;
      gl.charts.push(chart);
      if (gl.firstChartMs == null) gl.firstChartMs = Math.round(performance.now());
    }
  }

  // ---------- explorer ----------
  async function explorer() {
    const input = h("input", { id: "search", size: 48, placeholder: "height, block id, or relay@minute (1@2026-11-24T17:50Z)" });
    const form = h("form", { class: "controls", onsubmit: (ev) => { ev.preventDefault(); search(input.value.trim()); } },
      input, h("button", null, "Find"));
    $("app").replaceChildren(
      h("h1", null, "Explorer"), form,
      h("h2", null, "Recent blocks on the main chain"),
      table(["height", "id", "time (UTC)", "miner", "records"], h("tbody", { id: "recent" })),
      h("h2", null, "Side branches"),
      h("p", { class: "muted" }, "Valid blocks this node holds off its main chain: a block that lost a race to another at the same height, or a branch with less work. Their records are not on the chain."),
      table(["height", "side block", "parent", "main chain at that height"], h("tbody", { id: "side" })),
      h("h2", null, "Reorgs since this node started"),
      table(["when (UTC)", "fork after height", "left the main chain", "joined it"], h("tbody", { id: "reorgs" })));
    await explorerTick();
    done();
    setInterval(() => explorerTick().catch(() => {}), 5000);
  }

  function search(s) {
    let m;
    if (/^\d+$/.test(s) || /^[0-9a-fA-F]{64}$/.test(s)) location.href = "/block/" + s.toLowerCase();
    else if ((m = s.match(/^(\d+)\s*[@ /]\s*(\S+)$/)) && !Number.isNaN(parseMinute(m[2]))) location.href = "/reading/" + m[1] + "/" + parseMinute(m[2]);
    else setError("search: give a height, a 64-hex-digit block id, or relay@minute (minutes since 1970 or YYYY-MM-DDTHH:MMZ)");
  }

  async function explorerTick() {
    try {
      const [s, f] = await Promise.all([get("/status"), get("/forks")]);
      $("net").textContent = "network " + s.network + " · " + s.difficulty_bits + " bits";
      const blocks = await get("/blocks?from=" + Math.max(0, s.height - 19) + "&limit=20");
      relayNav(s.relays, blocks);
      const tb = $("recent");
      tb.replaceChildren();
      for (const b of blocks.reverse()) {
        tb.append(row([link("/block/" + b.height, String(b.height)), link("/block/" + b.id, short(b.id, 16), "mono"),
          b.time_ms ? utc(b.time_ms) : "—", h("span", { class: "mono" }, short(b.miner)),
          b.records.length + (b.records.length ? " (relays " + [...new Set(b.records.map((r) => r.relay))].join(", ") + ")" : "")]));
      }
      const sb = $("side");
      sb.replaceChildren();
      for (const x of f.side_blocks) {
        sb.append(row([x.height, link("/block/" + x.id, short(x.id, 16), "mono"), link("/block/" + x.parent, short(x.parent), "mono"),
          x.main_at_height ? link("/block/" + x.main_at_height, short(x.main_at_height), "mono") : "—"]));
      }
      if (!f.side_blocks.length) sb.append(row(["none among the last " + f.side_blocks_scanned + " blocks", "", "", ""]));
      const rb = $("reorgs");
      rb.replaceChildren();
      const ids = (list) => list.flatMap((id, i) => (i ? [" ", link("/block/" + id, short(id, 8), "mono")] : [link("/block/" + id, short(id, 8), "mono")]));
      for (const r of f.reorgs) rb.append(row([utc(r.at_ms), r.fork_height, ids(r.abandoned), ids(r.adopted)]));
      if (!f.reorgs.length) rb.append(row(["none", "", "", ""]));
      setError("");
    } catch (e) {
      setError("cannot reach the node: " + e.message);
    }
  }

  // ---------- block page ----------
  const SHOWN_RECORDS = 200;
  async function blockPage(key) {
    const b = await get("/blocks/" + key);
    const status = await get("/status");
    $("net").textContent = "network " + status.network + " · " + status.difficulty_bits + " bits";
    relayNav(status.relays, [b]);
    const size = b.raw.length / 2;
    const where = b.main
      ? h("span", { class: "pass" }, "on this node's main chain" + (status.height >= b.height ? ", " + (status.height - b.height) + " blocks below the tip" : ""))
      : h("span", { class: "fail" }, "on a side branch: not on this node's main chain, its records are not part of the chain");
    const nav = [b.height > 0 ? link("/block/" + b.prev, "← parent") : null, " ", b.main && b.height < status.height ? link("/block/" + (b.height + 1), "next →") : null];
    const fields = [
      ["height", String(b.height)], ["id", b.id], ["where", where], ["parent", b.height > 0 ? link("/block/" + b.prev, b.prev, "mono") : "— (genesis)"],
      ["time", b.time_ms ? utc(b.time_ms) + " (" + b.time_ms + " ms)" : "—"], ["difficulty", b.bits + " bits (work 2^" + b.bits + ")"],
      ["Merkle root", b.merkle_root], ["miner (ed25519 key)", b.miner], ["nonce", String(b.nonce)], ["signature", b.signature],
      ["size", size + " bytes"], ["records", String(b.records.length)],
    ];
    const recs = h("tbody");
    for (const r of b.records.slice(0, SHOWN_RECORDS)) {
      const last = r.samples[r.samples.length - 1] || {};
      recs.append(row([link("/relay/" + r.relay + "?from=" + (r.minute - 30) + "&to=" + (r.minute + 29), "relay " + r.relay),
        link("/reading/" + r.relay + "/" + r.minute, r.minute_utc), r.faults, r.samples.length,
        [last.Vab_kV, last.Vbc_kV, last.Vca_kV].join(" / "), [last.Ia_A, last.Ib_A, last.Ic_A].join(" / "), last.f_Hz, last.PF, last.P_kW, last.Q_kvar]));
    }
    $("app").replaceChildren(
      h("h1", null, "Block " + b.height), h("p", null, nav),
      h("table", null, h("tbody", null, fields.map(([k, v]) => h("tr", null, h("th", null, k), h("td", { class: typeof v === "string" && v.length > 40 ? "mono break" : null }, v))))),
      h("h2", null, "Records"),
      h("p", { class: "muted" }, "Values of each record's last sample; the reading page shows every sample and checks the record's proof."),
      table(["relay", "minute (UTC)", "faults", "samples", "Vab / Vbc / Vca kV", "Ia / Ib / Ic A", "f Hz", "PF", "P kW", "Q kvar"], recs),
      b.records.length > SHOWN_RECORDS ? h("p", { class: "muted" }, "First " + SHOWN_RECORDS + " of " + b.records.length + " records shown; all are in ", link("/blocks/" + b.id, "/blocks/" + b.id), ".") : null);
  }

  // ---------- reading page: the proof, checked here ----------
  const hex2bytes = (s) => {
    if (typeof s !== "string" || s.length % 2 || /[^0-9a-f]/i.test(s)) throw new Error("not hex");
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
    return out;
  };
  const bytes2hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // SHA-256 in script, for pages served over plain HTTP to another host, where browsers
  // withhold WebCrypto (it needs a secure context: https, or http on localhost).
  function sha256js(msg) {
    const K = new Uint32Array([
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
      0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
      0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
      0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
    const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const len = msg.length;
    const padded = new Uint8Array(((len + 9 + 63) >> 6) << 6);
    padded.set(msg);
    padded[len] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(len / 0x20000000));
    view.setUint32(padded.length - 4, (len << 3) >>> 0);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, hh] = H;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += hh;
    }
    const out = new Uint8Array(32);
    const ov = new DataView(out.buffer);
    H.forEach((x, i) => ov.setUint32(i * 4, x));
    return out;
  }
  const webCrypto = !!(window.crypto && window.crypto.subtle);
  gl.sha256js = (hex) => bytes2hex(sha256js(hex2bytes(hex)));
  async function sha256(bytes) {
    if (webCrypto) return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return sha256js(bytes);
  }

  // SHA-512 in script (for Ed25519 where WebCrypto is withheld), FIPS 180-4, on BigInt words.
  function sha512js(msg) {
    const K = [
      "428a2f98d728ae22", "7137449123ef65cd", "b5c0fbcfec4d3b2f", "e9b5dba58189dbbc", "3956c25bf348b538", "59f111f1b605d019", "923f82a4af194f9b", "ab1c5ed5da6d8118",
      "d807aa98a3030242", "12835b0145706fbe", "243185be4ee4b28c", "550c7dc3d5ffb4e2", "72be5d74f27b896f", "80deb1fe3b1696b1", "9bdc06a725c71235", "c19bf174cf692694",
      "e49b69c19ef14ad2", "efbe4786384f25e3", "0fc19dc68b8cd5b5", "240ca1cc77ac9c65", "2de92c6f592b0275", "4a7484aa6ea6e483", "5cb0a9dcbd41fbd4", "76f988da831153b5",
      "983e5152ee66dfab", "a831c66d2db43210", "b00327c898fb213f", "bf597fc7beef0ee4", "c6e00bf33da88fc2", "d5a79147930aa725", "06ca6351e003826f", "142929670a0e6e70",
      "27b70a8546d22ffc", "2e1b21385c26c926", "4d2c6dfc5ac42aed", "53380d139d95b3df", "650a73548baf63de", "766a0abb3c77b2a8", "81c2c92e47edaee6", "92722c851482353b",
      "a2bfe8a14cf10364", "a81a664bbc423001", "c24b8b70d0f89791", "c76c51a30654be30", "d192e819d6ef5218", "d69906245565a910", "f40e35855771202a", "106aa07032bbd1b8",
      "19a4c116b8d2d0c8", "1e376c085141ab53", "2748774cdf8eeb99", "34b0bcb5e19b48a8", "391c0cb3c5c95a63", "4ed8aa4ae3418acb", "5b9cca4f7763e373", "682e6ff3d6b2b8a3",
      "748f82ee5defb2fc", "78a5636f43172f60", "84c87814a1f0ab72", "8cc702081a6439ec", "90befffa23631e28", "a4506cebde82bde9", "bef9a3f7b2c67915", "c67178f2e372532b",
      "ca273eceea26619c", "d186b8c721c0c207", "eada7dd6cde0eb1e", "f57d4f7fee6ed178", "06f067aa72176fba", "0a637dc5a2c898a6", "113f9804bef90dae", "1b710b35131c471b",
      "28db77f523047d84", "32caab7b40c72493", "3c9ebe0a15c9bebc", "431d67c49c100d4c", "4cc5d4becb3e42b6", "597f299cfc657e2a", "5fcb6fab3ad6faec", "6c44198c4a475817"].map((x) => BigInt("0x" + x));
    const H = ["6a09e667f3bcc908", "bb67ae8584caa73b", "3c6ef372fe94f82b", "a54ff53a5f1d36f1", "510e527fade682d1", "9b05688c2b3e6c1f", "1f83d9abfb41bd6b", "5be0cd19137e2179"].map((x) => BigInt("0x" + x));
    const M = (1n << 64n) - 1n;
    const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & M;
    const len = msg.length;
    const padded = new Uint8Array(((len + 17 + 127) >> 7) << 7);
    padded.set(msg);
    padded[len] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(len / 0x20000000));
    view.setUint32(padded.length - 4, (len << 3) >>> 0);
    const w = new Array(80);
    for (let off = 0; off < padded.length; off += 128) {
      for (let i = 0; i < 16; i++) w[i] = view.getBigUint64(off + i * 8);
      for (let i = 16; i < 80; i++) {
        const s0 = rotr(w[i - 15], 1n) ^ rotr(w[i - 15], 8n) ^ (w[i - 15] >> 7n);
        const s1 = rotr(w[i - 2], 19n) ^ rotr(w[i - 2], 61n) ^ (w[i - 2] >> 6n);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M;
      }
      let [a, b, c, d, e, f, g, hh] = H;
      for (let i = 0; i < 80; i++) {
        const t1 = (hh + (rotr(e, 14n) ^ rotr(e, 18n) ^ rotr(e, 41n)) + ((e & f) ^ (~e & M & g)) + K[i] + w[i]) & M;
        const t2 = ((rotr(a, 28n) ^ rotr(a, 34n) ^ rotr(a, 39n)) + ((a & b) ^ (a & c) ^ (b & c))) & M;
        hh = g; g = f; f = e; e = (d + t1) & M; d = c; c = b; b = a; a = (t1 + t2) & M;
      }
      [a, b, c, d, e, f, g, hh].forEach((x, i) => { H[i] = (H[i] + x) & M; });
    }
    const out = new Uint8Array(64);
    const ov = new DataView(out.buffer);
    H.forEach((x, i) => ov.setBigUint64(i * 8, x));
    return out;
  }
  gl.sha512js = (hex) => bytes2hex(sha512js(hex2bytes(hex)));
  async function sha512(bytes) {
    if (webCrypto) return new Uint8Array(await crypto.subtle.digest("SHA-512", bytes));
    return sha512js(bytes);
  }

  // Ed25519 verification in script (RFC 8032 section 5.1.7 with the ZIP 215 rules of
  // docs/book/src/FORMAT.md section 5: key canonical and of large order, S canonical, R any point
  // encoding, the cofactored equation), as tools/verify_export.py does it: the relay's
  // signature of a record is checked here, not taken from the node.
  const ed25519 = (() => {
    const P = 2n ** 255n - 19n;
    const Q = 2n ** 252n + 27742317777372353535851937790883648493n;
    const mod = (a) => ((a % P) + P) % P;
    const pow = (b, e) => {
      let r = 1n;
      b = mod(b);
      while (e > 0n) {
        if (e & 1n) r = (r * b) % P;
        b = (b * b) % P;
        e >>= 1n;
      }
      return r;
    };
    const D = mod(-121665n * pow(121666n, P - 2n));
    const SQRT_M1 = pow(2n, (P - 1n) / 4n);
    const ID = [0n, 1n, 1n, 0n];
    const add = (a, b) => {
      const aa = mod((a[1] - a[0]) * (b[1] - b[0]));
      const bb = mod((a[1] + a[0]) * (b[1] + b[0]));
      const cc = mod(2n * a[3] * b[3] * D);
      const dd = mod(2n * a[2] * b[2]);
      const e = bb - aa, f = dd - cc, g = dd + cc, hh = bb + aa;
      return [mod(e * f), mod(g * hh), mod(f * g), mod(e * hh)];
    };
    const mul = (s, pt) => {
      let out = ID;
      while (s > 0n) {
        if (s & 1n) out = add(out, pt);
        pt = add(pt, pt);
        s >>= 1n;
      }
      return out;
    };
    const eq = (a, b) => mod(a[0] * b[2] - b[0] * a[2]) === 0n && mod(a[1] * b[2] - b[1] * a[2]) === 0n;
    const le = (b) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n);
    const recoverX = (y, sign) => {
      const x2 = mod((y * y - 1n) * pow(D * y * y + 1n, P - 2n));
      if (x2 === 0n) return 0n;
      let x = pow(x2, (P + 3n) / 8n);
      if (mod(x * x - x2) !== 0n) x = mod(x * SQRT_M1);
      if (mod(x * x - x2) !== 0n) return null;
      if ((x & 1n) !== sign) x = P - x;
      return x;
    };
    const decompress = (b) => {
      const n = le(b);
      const y = (n & ((1n << 255n) - 1n)) % P;
      const x = recoverX(y, n >> 255n);
      return x === null ? null : [x, y, 1n, mod(x * y)];
    };
    const compress = (pt) => {
      const zi = pow(pt[2], P - 2n);
      const x = mod(pt[0] * zi), y = mod(pt[1] * zi);
      let n = y | ((x & 1n) << 255n);
      const out = new Uint8Array(32);
      for (let i = 0; i < 32; i++) { out[i] = Number(n & 255n); n >>= 8n; }
      return out;
    };
    const GY = mod(4n * pow(5n, P - 2n));
    const BASE = [recoverX(GY, 0n), GY, 1n, mod(recoverX(GY, 0n) * GY)];
    return async (pub, msg, sig) => {
      if (pub.length !== 32 || sig.length !== 64) return false;
      const a = decompress(pub);
      if (!a || !equal(compress(a), pub) || eq(mul(8n, a), ID)) return false;
      const r = decompress(sig.slice(0, 32));
      if (!r) return false;
      const s = le(sig.slice(32));
      if (s >= Q) return false;
      const k = le(await sha512(concat(sig.slice(0, 32), pub, msg))) % Q;
      const neg = (pt) => [mod(-pt[0]), pt[1], pt[2], mod(-pt[3])];
      return eq(mul(8n, add(add(mul(s, BASE), mul(k, neg(a))), neg(r))), ID);
    };
  })();
  gl.ed25519 = async (pub, msg, sig) => ed25519(hex2bytes(pub), hex2bytes(msg), hex2bytes(sig));

  // A record's canonical encoding (docs/book/src/FORMAT.md section 6), decoded here so that the
  // values shown are the bytes the proof covers, not what the node says they are.
  const FIELDS = [["Vab", "kV"], ["Vbc", "kV"], ["Vca", "kV"], ["Ia", "A"], ["Ib", "A"], ["Ic", "A"], ["f", "Hz"], ["PF", ""], ["P", "kW"], ["Q", "kvar"]];
  function decodeRecord(b) {
    let at = 0;
    const varint = () => {
      let v = 0;
      for (let shift = 0; shift <= 49; shift += 7) {
        if (at >= b.length) throw new Error("record ends inside a number");
        const x = b[at++];
        v += (x & 0x7f) * 2 ** shift;
        if (!(x & 0x80)) return v;
      }
      throw new Error("number too long");
    };
    const zigzag = () => {
      const n = varint();
      return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
    };
    const r = { relay: varint(), minute: varint(), faults: varint(), flags: varint(), samples: [] };
    const count = varint();
    if (count < 1 || count > 6) throw new Error("sample count " + count);
    let prev = null;
    for (let i = 0; i < count; i++) {
      let s;
      if (prev === null) s = [varint(), varint(), varint(), varint(), varint(), varint(), varint(), zigzag(), zigzag(), zigzag()];
      else s = prev.map((p) => p + zigzag());
      r.samples.push(s);
      prev = s;
    }
    // Then nothing, or exactly the relay's 64-byte signature (FORMAT.md section 12).
    if (b.length - at === 64) {
      r.signature = b.slice(at);
      r.body = b.slice(0, at);
    } else if (at !== b.length) throw new Error((b.length - at) + " bytes after the last sample");
    else r.body = b;
    const mask = (r.flags >> 8) & 0x3f;
    let missing = 0;
    for (let i = 0; i < 6; i++) if (mask & (1 << i)) missing++;
    const n = count + missing;
    r.seconds = [];
    for (let slot = 0; slot < n; slot++) if (!(mask & (1 << slot))) r.seconds.push(Math.floor((slot * 60) / n));
    return r;
  }
  const milli = (v) => (v / 1000).toFixed(3);

  async function readingPage(relay, minuteText) {
    const minute = parseMinute(minuteText);
    if (minute == null || Number.isNaN(minute)) throw new Error(minuteText + " is not a minute (minutes since 1970, or YYYY-MM-DDTHH:MMZ)");
    const p = await get("/readings/" + relay + "/" + minute + "/proof");
    const steps = [];
    const step = (id, title, ok, detail) => {
      steps.push({ id, title, ok, detail });
      return ok;
    };
    let rec = null;
    let header = null;
    try {
      const record = hex2bytes(p.record);
      header = hex2bytes(p.header);
      const path = p.path.map(hex2bytes);
      // 1. The record's bytes decode, and name this relay and minute.
      try {
        rec = decodeRecord(record);
        step("record", "The record's bytes decode (FORMAT.md §6) and name relay " + relay + ", minute " + minuteUtc(minute),
          rec.relay === relay && rec.minute === minute, "relay " + rec.relay + ", minute " + rec.minute + " (" + minuteUtc(rec.minute) + "), " + rec.samples.length + " samples, " + rec.faults + " fault openings");
      } catch (e) {
        step("record", "The record's bytes decode (FORMAT.md §6)", false, e.message);
      }
      // 2. The leaf hash.
      let node = await sha256(concat([0], record));
      step("leaf", "Leaf hash = SHA-256(0x00 ‖ record)", true, bytes2hex(node));
      // 3. The audit path, RFC 9162 section 2.1.3.2.
      let fn = p.index, sn = p.size - 1, pathOk = p.index < p.size && p.size > 0;
      for (let i = 0; i < path.length && pathOk; i++) {
        if (path[i].length !== 32 || sn === 0) {
          pathOk = step("path-" + i, "Audit path step " + (i + 1), false, sn === 0 ? "the path is longer than the tree allows" : "not a 32-byte hash");
          break;
        }
        const left = fn % 2 === 1 || fn === sn;
        node = left ? await sha256(concat([1], path[i], node)) : await sha256(concat([1], node, path[i]));
        step("path-" + i, "Audit path step " + (i + 1) + ": SHA-256(0x01 ‖ " + (left ? "sibling ‖ node" : "node ‖ sibling") + ")", true,
          "sibling " + bytes2hex(path[i]) + " → " + bytes2hex(node));
        if (left) {
          while (fn % 2 === 0 && fn !== 0) {
            fn = Math.floor(fn / 2);
            sn = Math.floor(sn / 2);
          }
        }
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
      if (pathOk && sn !== 0) pathOk = step("path-end", "The audit path reaches the root", false, "the path is shorter than a tree of " + p.size + " records needs");
      // 4. The root the path reached is the header's.
      const root = header.length === 119 ? header.slice(38, 70) : new Uint8Array(0);
      step("merkle-root", "The path's root equals the header's Merkle root (header bytes 38‥70)", pathOk && equal(node, root),
        "computed " + bytes2hex(node) + ", header " + bytes2hex(root));
      // 5. The header hashes to the block id.
      const id = await sha256(header);
      step("block-id", "SHA-256(header) equals the block id " + short(p.block_id, 16), header.length === 119 && bytes2hex(id) === p.block_id,
        "computed " + bytes2hex(id) + (header.length === 119 ? "" : " (a header is 119 bytes, this one " + header.length + ")"));
      // 6. The id carries the proof of work the header claims.
      if (header.length === 119) {
        const bits = header[78];
        let zeros = 0;
        for (const x of id) {
          if (x === 0) { zeros += 8; continue; }
          zeros += Math.clz32(x) - 24;
          break;
        }
        const height = new DataView(header.buffer).getUint32(2);
        step("work", "The id has at least " + bits + " leading zero bits (the header's difficulty), at height " + height, zeros >= bits && height === p.height,
          zeros + " leading zero bits; header height " + height + ", node says " + p.height);
      }
      // 7. The relay's signature (FORMAT.md section 12), checked here with the key the
      // network's relay registry names for this relay and minute.
      const rs = p.relay_signature || {};
      if (rec && rs.signed === "relay") {
        const key = hex2bytes(rs.registered_key || "");
        const msg = concat(new TextEncoder().encode("gridledger record v1\n"), rec.body);
        const ok = !!rec.signature && (await ed25519(key, msg, rec.signature));
        step("relay-signature", "Signed by relay " + relay + ": Ed25519 over \"gridledger record v1\\n\" ‖ record verifies under the registry's key " + short(rs.registered_key, 16), ok,
          (rec.signature ? "signature " + bytes2hex(rec.signature) : "no signature in the record") + "; key " + rs.registered_key + ", registered from minute " + rs.registered_from + " (" + minuteUtc(rs.registered_from) + ")");
      }
    } catch (e) {
      step("input", "The proof's fields are well-formed hex", false, e.message);
    }
    const rs = p.relay_signature || {};
    const signer = rs.signed === "relay"
      ? "Signed by the relay: its key in the network's relay registry (" + short(rs.registered_key || "", 16) + ", compare it with your consortium's registry file) verifies the record's signature, checked above. No member can invent or change this reading."
      : rs.signed === "unregistered"
        ? "The record carries a signature, but the network's relay registry names no key for relay " + relay + " at this minute, so nothing says whose key made it: treat the reading as unsigned."
        : "Unsigned: relay " + relay + " is not in the network's relay registry. The reading rests on the miner's word and on the nodes that read the relay themselves (disputes).";
    // Finality: the block in the latest final checkpoint (a tlog of block ids, RFC 6962),
    // its inclusion path recomputed here; the checkpoint's member signatures are Ed25519 (check
    // them with Go's note verifier or tools/verify_export.py and GET /members).
    let finality = { final: false, text: "" };
    try {
      // Asked only of a block that /status says is final (a 404 would be a console error).
      const st = await get("/status");
      const fin = st.finality || {};
      if (fin.on && p.height <= fin.final_height) {
        const c = await get("/checkpoint/proof?block=" + p.block_id);
        const lines = (c.checkpoint || "").split("\n");
        const b64 = (t) => Uint8Array.from(atob(t), (ch) => ch.charCodeAt(0));
        const root = b64(lines[2] || "");
        let node = await sha256(concat([0], hex2bytes(p.block_id)));
        let fn = c.index, sn = c.size - 1;
        for (const sib of c.path.map(b64)) {
          const left = fn % 2 === 1 || fn === sn;
          node = left ? await sha256(concat([1], sib, node)) : await sha256(concat([1], node, sib));
          if (left) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
        const ok = sn === 0 && equal(node, root) && lines[1] === String(c.size);
        const sigs = lines.filter((l) => l.startsWith("\u2014 ")).length;
        finality = { final: ok, text: ok
          ? "FINAL: block " + p.height + " is leaf " + c.index + " of the final checkpoint of size " + c.size + " (path checked here), cosigned by " + sigs + " members: no node reorganises below it."
          : "the finality proof does not check" };
      } else {
        finality.text = fin.on
          ? "Not final yet: the block waits for a quorum of members' cosignatures."
          : "Not final: this network has no allow-list, so a chain with more work could replace this block.";
      }
    } catch (e) {
      finality.text = "finality: " + e.message;
    }
    const failed = steps.find((s) => !s.ok);
    gl.proof = { final: finality.final, ok: !failed, failed: failed ? failed.id : null, steps: steps.map((s) => ({ id: s.id, ok: s.ok })), hash: webCrypto ? "WebCrypto" : "script", record: rec, signed: rs.signed || null };
    const samples = h("tbody");
    if (rec) {
      rec.samples.forEach((s, i) => samples.append(row([rec.seconds[i], ...s.map(milli)])));
    }
    $("app").replaceChildren(
      h("h1", null, "Relay " + relay + " at " + minuteUtc(minute)),
      h("div", { id: "verdict", class: "verdict " + (failed ? "fail" : "pass") },
        failed ? "✗ Proof FAILED at: " + failed.title + "." : "✓ Proof verified in this browser: the record is in block " + p.height + " (" + short(p.block_id, 16) + ")."),
      h("p", { class: "note" }, h("b", null, "What this proves: "),
        "these record bytes are a leaf of the Merkle tree whose root is in the header of the block with this id, and that id meets its difficulty. Every hash was recomputed here (" +
        (webCrypto ? "WebCrypto SHA-256" : "SHA-256 in script: this page is not a secure context, so the browser withholds WebCrypto") +
        "). ", h("b", null, "What it does not prove: "),
        "that this block is on the network's chain unless the line below says it is final (otherwise only that this node serves it: ask another party's node for ",
        h("code", null, "/blocks/" + p.block_id), "), nor that the relay's reading was true (nodes that read the relay themselves flag a differing record as a dispute)."),
      h("p", { id: "finality", class: finality.final ? "up" : "muted" }, finality.text),
      h("p", { id: "signer", class: rs.signed === "relay" && !failed ? "up" : "muted" }, signer),
      h("h2", null, "Steps"),
      h("ol", { class: "steps" }, steps.map((s) => h("li", { "data-step": s.id }, h("span", { class: s.ok ? "pass" : "fail" }, s.ok ? "✓ " : "✗ "), s.title,
        h("div", { class: "mono muted break" }, s.detail)))),
      h("h2", null, "The record, decoded from the proven bytes"),
      rec ? h("p", null, "faults " + rec.faults + ", clock " + (rec.flags & 1 ? "set" : "not set") + ", block ", link("/block/" + p.block_id, p.height + " " + short(p.block_id)),
        ", ", link("/relay/" + relay + "?from=" + (minute - 30) + "&to=" + (minute + 29), "curves around this minute")) : h("p", { class: "fail" }, "the record does not decode"),
      table(["second"].concat(FIELDS.map(([n, u]) => n + (u ? " " + u : ""))), samples));
  }

  // ---------- router ----------
  async function route() {
    const path = location.pathname;
    let m;
    if (path === "/") return overview();
    if ((m = path.match(/^\/relay\/(\d+)$/))) return relayPage(Number(m[1]));
    if (path === "/explorer") return explorer();
    if ((m = path.match(/^\/block\/([0-9a-fA-F]{64}|\d+)$/))) return blockPage(m[1].toLowerCase());
    if ((m = path.match(/^\/reading\/(\d+)\/([^/]+)$/))) return readingPage(Number(m[1]), decodeURIComponent(m[2]));
    $("app").replaceChildren(h("p", null, "No such page. ", link("/", "Overview")));
  }
  gl.page = location.pathname;
  route().then(() => done(), (e) => done(e));
})();
