// The emulator console: one EventSource, plain DOM, a canvas chart. No library, no build step.
"use strict";
(function () {
  const TRANSPORTS = ["grpc", "rest", "websocket"];
  const SHOWN_REJECTIONS = 10;  // of the 50 the emulator keeps: the table stays one screen
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const withToken = (path) => token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const time = (t) => new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false }) + "." + String(Math.floor((t % 1) * 1000)).padStart(3, "0");
  let state = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function fillBody(tableId, rows) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren(...rows.map((cells) => {
      const tr = el("tr");
      for (const cell of cells) {
        const td = el("td", cell.attrs || {});
        td.textContent = cell.text !== undefined ? cell.text : cell;
        tr.append(td);
      }
      return tr;
    }));
  }
  const num = (value, id) => ({ text: fmt(value), attrs: id ? { class: "num", id } : { class: "num" } });

  // ---------------------------------------------------------------- faults

  async function fault(method, args) {
    $("fault-error").textContent = "";
    try {
      const response = await fetch("/_emulator/faults", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Emulator-Token": token },
        body: JSON.stringify({ method, args: args || {} }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || ("HTTP " + response.status));
      }
    } catch (err) {
      $("fault-error").textContent = "fault switch failed: " + err.message;
      $("fault-error").className = "note error";
    }
  }

  const httpOutcome = (status, retryAfter) => ({ kind: "http", status, retry_after: retryAfter, body: "", content_type: "text/plain" });
  const value = (id) => Number($(id).value);

  function fractionRule(transport, status) {
    if (!state) return null;
    return state.faults.fractions.find((r) => r.transport === transport && r.outcome.kind === "http" && r.outcome.status === status) || null;
  }

  function toggleFraction(transport, status, box) {
    const rule = fractionRule(transport, status);
    if (box.checked && !rule) {
      const retryAfter = status === 429 ? value(`fault-${transport}-429-retry`) : null;
      fault("fail_fraction", { fraction: value(`fault-${transport}-${status}-share`), outcome: httpOutcome(status, retryAfter), transport });
    } else if (!box.checked && rule) {
      fault("clear_fraction", { outcome: rule.outcome, transport });
    }
  }

  function buildSwitches() {
    const grid = el("div", { class: "switches" },
      el("span", { class: "head", text: "transport" }),
      el("span", { class: "head", text: "503 / UNAVAILABLE (share)" }),
      el("span", { class: "head", text: "429 + Retry-After (share, s)" }),
      el("span", { class: "head", text: "slow answers (s)" }),
      el("span", { class: "head", text: "drop connections" }));
    for (const t of TRANSPORTS) {
      const box503 = el("input", { type: "checkbox", id: `fault-${t}-503` });
      box503.addEventListener("change", () => toggleFraction(t, 503, box503));
      const box429 = el("input", { type: "checkbox", id: `fault-${t}-429` });
      box429.addEventListener("change", () => toggleFraction(t, 429, box429));
      const boxSlow = el("input", { type: "checkbox", id: `fault-${t}-slow` });
      boxSlow.addEventListener("change", () => fault("add_latency", { seconds: boxSlow.checked ? value(`fault-${t}-slow-seconds`) : 0, transport: t }));
      const drop = el("button", { id: `fault-${t}-drop`, type: "button", text: "drop next" });
      drop.addEventListener("click", () => fault("drop_connection", { n: value(`fault-${t}-drop-n`), transport: t }));
      grid.append(
        el("span", { class: "mono", text: t }),
        el("label", { class: "switch", id: `switch-${t}-503` }, box503, el("input", { type: "number", id: `fault-${t}-503-share`, value: "0.5", min: "0", max: "1", step: "0.05" })),
        el("label", { class: "switch", id: `switch-${t}-429` }, box429, el("input", { type: "number", id: `fault-${t}-429-share`, value: "0.5", min: "0", max: "1", step: "0.05" }),
          el("input", { type: "number", id: `fault-${t}-429-retry`, value: "1", min: "0", step: "0.5" })),
        el("label", { class: "switch", id: `switch-${t}-slow` }, boxSlow, el("input", { type: "number", id: `fault-${t}-slow-seconds`, value: "0.2", min: "0", step: "0.05" })),
        el("span", { class: "switch", id: `switch-${t}-drop` }, drop, el("input", { type: "number", id: `fault-${t}-drop-n`, value: "5", min: "1", step: "1" }),
          el("span", { id: `fault-${t}-drop-pending`, class: "note" })));
    }
    const publish = el("input", { type: "checkbox", id: "fault-publish" });
    publish.addEventListener("change", () => publish.checked
      ? fault("fail_publish", { fraction: value("fault-publish-share") })
      : fault("stop_publish_failures", {}));
    const clear = el("button", { id: "faults-clear", type: "button", text: "clear all faults" });
    clear.addEventListener("click", () => fault("clear", {}));
    const row = el("div", { class: "publish" },
      el("label", { class: "switch", id: "switch-publish" }, publish, "publish failures (share)",
        el("input", { type: "number", id: "fault-publish-share", value: "0.5", min: "0", max: "1", step: "0.05" }),
        el("span", { id: "publish-note", class: "note" })),
      clear);
    $("fault-switches").replaceChildren(grid, row);
  }

  function setSwitch(id, on) {
    const box = $(id);
    if (document.activeElement !== box) box.checked = on;
    box.parentElement.classList.toggle("on", on);
  }

  function renderFaults(s) {
    const f = s.faults;
    for (const t of TRANSPORTS) {
      setSwitch(`fault-${t}-503`, !!fractionRule(t, 503));
      setSwitch(`fault-${t}-429`, !!fractionRule(t, 429));
      setSwitch(`fault-${t}-slow`, (f.latency[t] || 0) > 0);
      const pending = f.drops.filter((d) => d.transport === t).reduce((a, d) => a + d.remaining, 0);
      $(`fault-${t}-drop-pending`).textContent = pending ? `${pending} pending` : "";
      $(`switch-${t}-drop`).classList.toggle("on", pending > 0);
    }
    const publishOn = f.publish.always || f.publish.next > 0 || f.publish.fraction > 0;
    setSwitch("fault-publish", publishOn);
    $("publish-note").textContent = s.ack === "sync"
      ? "ack=sync: the client gets CODE_INTERNAL_ERROR"
      : "ack=async: the client got its success; failed batches are lost";
    const kinds = Object.keys(s.fault_counters).sort();
    fillBody("fault-counters", kinds.map((k) => [k, ...TRANSPORTS.map((t) => num(s.fault_counters[k][t] || 0, `faultcount-${k}-${t}`))]));
  }

  // ---------------------------------------------------------------- capacity

  async function applyOverload() {
    $("overload-error").textContent = "";
    const number = (id) => ($(id).value === "" ? null : Number($(id).value));
    const settings = {
      capacity_events_per_second: number("overload-capacity"),
      gateway_queue_depth: number("overload-depth"),
      gateway_status: Number($("overload-status").value),
      gateway_retry_after: number("overload-retry") || 0,
    };
    try {
      const response = await fetch("/_emulator/overload", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Emulator-Token": token },
        body: JSON.stringify(settings),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || ("HTTP " + response.status));
      }
    } catch (err) {
      $("overload-error").textContent = "capacity change failed: " + err.message;
      $("overload-error").className = "note error";
    }
  }

  function renderOverload(s) {
    const o = s.overload;
    const fields = [["overload-capacity", o.capacity_events_per_second], ["overload-depth", o.gateway_queue_depth],
      ["overload-status", o.gateway_status], ["overload-retry", o.gateway_retry_after]];
    for (const [id, v] of fields) {  // the server's values, unless the user is editing
      if (!$("overload-controls").contains(document.activeElement)) $(id).value = v === null ? "" : v;
    }
    $("overload-state").textContent = o.capacity_events_per_second === null
      ? "unlimited: every request is published at once"
      : `waiting for the publisher: ${fmt(o.waiting)} requests (${fmt(o.blocked)} blocked, ${fmt(o.buffered)}/${fmt(o.worker_buffer_size)} buffered, ${fmt(o.publishing)}/${fmt(o.worker_pool_size)} publishing); events published twice: ${fmt(s.events_duplicated)}`;
  }

  // ---------------------------------------------------------------- chart

  function drawChart(points) {
    const canvas = $("rate-chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 56, bottom = height - 18, top = 8, right = width - 8;
    const now = state ? state.now : Date.now() / 1000, span = 300;
    const max = Math.max(10, ...points.map((p) => p[1]));
    const scale = Math.pow(10, Math.floor(Math.log10(max)));
    const yMax = Math.ceil(max / scale) * scale;
    g.strokeStyle = "#dfe3ea"; g.fillStyle = "#69707d"; g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = bottom - (bottom - top) * i / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.textAlign = "right"; g.fillText(fmt(Math.round(yMax * i / 4)), left - 4, y + 4);
    }
    g.textAlign = "center";
    for (let s = 0; s <= span; s += 60) {
      const x = right - (right - left) * s / span;
      g.fillText(s === 0 ? "now" : `-${s / 60} min`, x, height - 4);
    }
    const xOf = (t) => right - (right - left) * (now - t) / span;
    const yOf = (v) => bottom - (bottom - top) * v / yMax;
    const shown = points.filter((p) => now - p[0] <= span);
    if (!shown.length) return;
    g.beginPath();
    shown.forEach((p, i) => (i ? g.lineTo(xOf(p[0]), yOf(p[1])) : g.moveTo(xOf(p[0]), yOf(p[1]))));
    g.strokeStyle = "#2f6fde"; g.lineWidth = 1.5; g.stroke();
    g.lineTo(xOf(shown[shown.length - 1][0]), bottom); g.lineTo(xOf(shown[0][0]), bottom); g.closePath();
    g.fillStyle = "rgba(47, 111, 222, 0.12)"; g.fill();
  }

  // ---------------------------------------------------------------- the rest

  function renderLatest(s) {
    const note = $("events-note");
    if (!s.events_kept) {
      note.textContent = `capture=${s.capture}: events are not kept, only counts and digests (start the emulator with capture="events" to see them here).`;
      $("latest").replaceChildren();
      return;
    }
    note.textContent = "Newest first; payloads decoded (JSON pretty-printed, protobuf/Avro with the configured decoders, hex otherwise).";
    const blocks = [];
    for (const [type, events] of Object.entries(s.latest)) {
      const rows = events.map((e) => el("tr", {},
        el("td", { class: "mono", text: time(e.captured_at) }),
        el("td", { text: e.transport }),
        el("td", { class: "mono", text: e.req_guid }),
        el("td", { class: "mono", text: e.conn_id }),
        el("td", { text: e.group }),
        el("td", { text: e.format + (e.error ? " (" + e.error + ")" : "") }),
        el("td", {}, el("pre", { class: "payload", text: e.payload }))));
      const table = el("table", { class: "latest", "data-type": type },
        el("thead", {}, el("tr", {}, ...["captured", "transport", "req_guid", "connection", "group", "format", "payload"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows));
      blocks.push(el("div", { class: "events-type", text: `${type} → ${events.length ? events[0].topic : ""}` }), table);
    }
    $("latest").replaceChildren(...blocks);
  }

  function render(s) {
    state = s;
    $("mode").textContent = `capture=${s.capture} · ack=${s.ack}`;
    $("total-events").textContent = fmt(s.total_events) + " events";
    fillBody("topics", s.topics.map((t) => [t.type, { text: t.topic, attrs: { class: "mono" } }, num(t.count, `count-${t.type}`), num(t.bytes)]));
    fillBody("transports", Object.entries(s.transports).map(([t, c]) =>
      [t, num(c.received, `received-${t}`), num(c.accepted, `accepted-${t}`), num(c.rejected, `rejected-${t}`), num(c.deduplicated), num(c.duplicated, `duplicated-${t}`), num(c.events, `events-${t}`)]));
    $("ws-connections").textContent = `WebSocket connections open: ${s.connections_open}; refused: ${s.connections_refused}`;
    $("connection-count").textContent = `(${s.connection_count} seen${s.connection_count > s.connections.length ? ", busiest " + s.connections.length + " shown" : ""})`;
    fillBody("connections", s.connections.map((c) => [c.transport, { text: c.conn_id || "(none)", attrs: { class: "mono" } }, num(c.requests)]));
    fillBody("rejected-kinds", Object.entries(s.rejected_by_kind).map(([k, per]) => [k, ...TRANSPORTS.map((t) => num(per[t] || 0, `rejectedcount-${k}-${t}`))]));
    fillBody("rejections", s.recent_rejections.slice(0, SHOWN_REJECTIONS).map((r) => [{ text: time(r.at), attrs: { class: "mono" } }, r.transport, { text: r.conn_id, attrs: { class: "mono" } }, r.kind, r.reason]));
    renderFaults(s);
    renderOverload(s);
    renderLatest(s);
    drawChart(s.rate);
  }

  function connect() {
    const source = new EventSource(withToken("/_emulator/ui/stream"));
    source.onopen = () => { $("status").textContent = "live"; $("status").className = "status live"; };
    source.onmessage = (message) => render(JSON.parse(message.data));
    // EventSource reconnects by itself (an emulator restart); say so meanwhile.
    source.onerror = () => { $("status").textContent = "disconnected, retrying…"; $("status").className = "status down"; };
  }

  buildSwitches();
  $("overload-apply").addEventListener("click", applyOverload);
  window.addEventListener("resize", () => state && drawChart(state.rate));
  connect();
})();
