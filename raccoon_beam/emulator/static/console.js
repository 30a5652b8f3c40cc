// The emulator console: one EventSource, plain DOM, a canvas chart. No library, no build step.
"use strict";
(function () {
  const TRANSPORTS = ["grpc", "rest", "websocket"];
  const SHOWN_REJECTIONS = 10;  // of the 50 the emulator keeps: the table stays one screen
  // The token comes in the URL's fragment (#token=...), which no request carries: it is traded
  // once for a cookie (HttpOnly, SameSite=Strict) that the event stream sends, then dropped from the URL.
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  if (token) history.replaceState(null, "", location.pathname + location.search);
  // The tokened URL pasted into an open console changes only the fragment: start over with it.
  window.addEventListener("hashchange", () => location.reload());
  const tokenHeaders = token ? { "X-Emulator-Token": token } : {};
  const session = fetch("/_emulator/ui/session", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...tokenHeaders },
    body: "{}",
  }).catch(() => null);
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

  // The rules' scopes as GET /_emulator/faults names them: "all" is a rule for every transport
  // (transport None: what the command line sets without --fail-transport, or the API without one).
  const SCOPES = ["all", ...TRANSPORTS];
  const transportOf = (scope) => (scope === "all" ? null : scope);

  // POSTs JSON to a control route; a refusal is shown in the note `errorId` ("<what> failed: <error>").
  async function postControl(path, payload, errorId, what) {
    $(errorId).textContent = "";
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...tokenHeaders },
        body: JSON.stringify(payload),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || ("HTTP " + response.status));
      }
    } catch (err) {
      $(errorId).textContent = `${what} failed: ${err.message}`;
      $(errorId).className = "note error";
    }
  }

  const fault = (method, args) => postControl("/_emulator/faults", { method, args: args || {} }, "fault-error", "fault switch");

  const httpOutcome = (status, retryAfter) => ({ kind: "http", status, retry_after: retryAfter, body: "", content_type: "text/plain" });
  const value = (id) => Number($(id).value);
  const isHttp = (outcome, status) => outcome.kind === "http" && outcome.status === status;

  function fractionRule(scope, status) {
    if (!state) return null;
    return state.faults.fractions.find((r) => r.transport === scope && isHttp(r.outcome, status)) || null;
  }

  function toggleFraction(scope, status, box) {
    const rule = fractionRule(scope, status);
    if (box.checked && !rule) {
      const retryAfter = status === 429 ? value(`fault-${scope}-429-retry`) : null;
      fault("fail_fraction", { fraction: value(`fault-${scope}-${status}-share`), outcome: httpOutcome(status, retryAfter), transport: transportOf(scope) });
    } else if (!box.checked && rule) {
      fault("clear_fraction", { outcome: rule.outcome, transport: transportOf(scope) });
    }
  }

  const numberInput = (id, value, attrs) => el("input", { type: "number", id, value, ...attrs });
  const share = (id) => numberInput(id, "0.5", { min: "0", max: "1", step: "0.05" });

  function checkbox(id, onChange) {
    const box = el("input", { type: "checkbox", id });
    box.addEventListener("change", () => onChange(box));
    return box;
  }

  function buildSwitches() {
    const heads = ["scope", "503 / UNAVAILABLE (share)", "429 + Retry-After (share, s)", "slow answers (s)",
      "fail next N (503)", "drop next N connections"];
    const grid = el("div", { class: "switches" }, ...heads.map((text) => el("span", { class: "head", text })));
    for (const scope of SCOPES) {
      const t = transportOf(scope);
      grid.append(
        el("span", { class: "mono", text: scope === "all" ? "all transports" : scope }),
        el("label", { class: "switch", id: `switch-${scope}-503` },
          checkbox(`fault-${scope}-503`, (box) => toggleFraction(scope, 503, box)), share(`fault-${scope}-503-share`)),
        el("label", { class: "switch", id: `switch-${scope}-429` },
          checkbox(`fault-${scope}-429`, (box) => toggleFraction(scope, 429, box)), share(`fault-${scope}-429-share`),
          numberInput(`fault-${scope}-429-retry`, "1", { min: "0", step: "0.5" })),
        el("label", { class: "switch", id: `switch-${scope}-slow` },
          checkbox(`fault-${scope}-slow`, (box) => fault("add_latency", { seconds: box.checked ? value(`fault-${scope}-slow-seconds`) : 0, transport: t })),
          numberInput(`fault-${scope}-slow-seconds`, "0.2", { min: "0", step: "0.05" })),
        el("label", { class: "switch", id: `switch-${scope}-next` },
          checkbox(`fault-${scope}-next`, (box) => box.checked
            ? fault("fail_next", { n: value(`fault-${scope}-next-n`), outcome: httpOutcome(503, null), transport: t })
            : fault("clear_next", { transport: t })),
          numberInput(`fault-${scope}-next-n`, "5", { min: "1", step: "1" }), el("span", { id: `fault-${scope}-next-pending`, class: "note" })),
        el("label", { class: "switch", id: `switch-${scope}-drop` },
          checkbox(`fault-${scope}-drop`, (box) => box.checked
            ? fault("drop_connection", { n: value(`fault-${scope}-drop-n`), transport: t })
            : fault("clear_drops", { transport: t })),
          numberInput(`fault-${scope}-drop-n`, "5", { min: "1", step: "1" }), el("span", { id: `fault-${scope}-drop-pending`, class: "note" })));
    }
    const publish = checkbox("fault-publish", (box) => box.checked
      ? fault("fail_publish", { fraction: value("fault-publish-share") })
      : fault("stop_publish_failures", {}));
    const rejectType = el("input", { type: "text", id: "fault-reject-type", placeholder: "event type" });
    const reject = el("button", { id: "fault-reject", type: "button", text: "reject" });
    reject.addEventListener("click", () => rejectType.value && fault("reject_event_type", { event_type: rejectType.value }));
    const clear = el("button", { id: "faults-clear", type: "button", text: "clear all faults" });
    clear.addEventListener("click", () => fault("clear", {}));
    const row = el("div", { class: "publish" },
      el("label", { class: "switch", id: "switch-publish" }, publish, "publish failures (share)", share("fault-publish-share"),
        el("span", { id: "publish-note", class: "note" })),
      el("span", { class: "switch", id: "switch-reject" }, "reject an event type (CODE_BAD_REQUEST)", rejectType, reject),
      clear);
    $("fault-switches").replaceChildren(grid, row);
  }

  function setSwitch(id, on) {
    const box = $(id);
    if (document.activeElement !== box) box.checked = on;
    box.parentElement.classList.toggle("on", on);
  }

  // A rule's value shown in its input (whoever set it), unless the user is typing there.
  function setValue(id, v) {
    if (v !== null && v !== undefined && document.activeElement !== $(id)) $(id).value = v;
  }

  // Every rule in force, one line each, with a key the browser test compares to GET /_emulator/faults.
  function ruleLines(f) {
    const requests = (scope) => (scope === "all" ? "requests (every transport)" : `${scope} requests`);
    const lines = [];
    for (const r of f.fractions) {
      lines.push({ key: `fraction|${r.transport}|${r.fraction}|${r.describe}`, text: `${Math.round(r.fraction * 1000) / 10} % of ${requests(r.transport)}: ${r.describe}`,
        remove: () => fault("clear_fraction", { outcome: r.outcome, transport: transportOf(r.transport) }) });
    }
    for (const r of f.next) {
      lines.push({ key: `next|${r.transport}|${r.remaining}|${r.describe}`, text: `the next ${r.remaining} ${requests(r.transport)}: ${r.describe}`,
        remove: () => fault("clear_next", { transport: transportOf(r.transport) }) });
    }
    for (const r of f.drops) {
      lines.push({ key: `drop|${r.transport}|${r.remaining}|${r.kind}`, text: `the next ${r.remaining} ${requests(r.transport)}: connection dropped (${r.kind.replaceAll("_", " ")})`,
        remove: () => fault("clear_drops", { transport: transportOf(r.transport) }) });
    }
    for (const [scope, seconds] of Object.entries(f.latency)) {
      lines.push({ key: `latency|${scope}|${seconds}`, text: `answers to ${requests(scope)} ${seconds} s late`,
        remove: () => fault("add_latency", { seconds: 0, transport: transportOf(scope) }) });
    }
    for (const type of f.rejected_types) {
      lines.push({ key: `reject|${type}`, text: `every batch with event type ${type}: CODE_BAD_REQUEST`,
        remove: () => fault("allow_event_type", { event_type: type }) });
    }
    const p = f.publish;
    const publishes = [];
    if (p.always) publishes.push({ key: "publish|always", text: "every publish fails" });
    if (p.next > 0) publishes.push({ key: `publish|next|${p.next}`, text: `the next ${p.next} publishes fail` });
    if (p.fraction > 0) publishes.push({ key: `publish|fraction|${p.fraction}`, text: `${Math.round(p.fraction * 1000) / 10} % of publishes fail` });
    for (const line of publishes) lines.push({ ...line, remove: () => fault("stop_publish_failures", {}) });
    return lines;
  }

  let shownRules = null;  // the keys on the page: the list is rebuilt only when they change

  function renderRules(f) {
    const lines = ruleLines(f);
    const keys = lines.map((line) => line.key).join("\n");
    if (keys === shownRules) return;  // (a button rebuilt under the pointer would lose its click)
    shownRules = keys;
    const items = lines.map((line) => {
      const remove = el("button", { type: "button", class: "remove", title: "remove this rule", text: "×" });
      remove.addEventListener("click", line.remove);
      return el("li", { "data-rule": line.key }, el("span", { text: line.text }), remove);
    });
    $("faults-in-force").replaceChildren(...items);
    $("faults-none").textContent = lines.length ? "" : "none: every request is answered as Raccoon would";
  }

  function renderFaults(s) {
    const f = s.faults;
    for (const scope of SCOPES) {
      const rule503 = fractionRule(scope, 503), rule429 = fractionRule(scope, 429);
      setSwitch(`fault-${scope}-503`, !!rule503);
      if (rule503) setValue(`fault-${scope}-503-share`, rule503.fraction);
      setSwitch(`fault-${scope}-429`, !!rule429);
      if (rule429) { setValue(`fault-${scope}-429-share`, rule429.fraction); setValue(`fault-${scope}-429-retry`, rule429.outcome.retry_after); }
      const latency = f.latency[scope] || 0;
      setSwitch(`fault-${scope}-slow`, latency > 0);
      if (latency > 0) setValue(`fault-${scope}-slow-seconds`, latency);
      for (const [kind, rules] of [["next", f.next], ["drop", f.drops]]) {
        const pending = rules.filter((r) => r.transport === scope).reduce((a, r) => a + r.remaining, 0);
        setSwitch(`fault-${scope}-${kind}`, pending > 0);
        $(`fault-${scope}-${kind}-pending`).textContent = pending ? `${pending} pending` : "";
      }
    }
    const publishOn = f.publish.always || f.publish.next > 0 || f.publish.fraction > 0;
    setSwitch("fault-publish", publishOn);
    if (f.publish.fraction > 0) setValue("fault-publish-share", f.publish.fraction);
    $("switch-reject").classList.toggle("on", f.rejected_types.length > 0);
    $("publish-note").textContent = s.ack === "sync"
      ? "ack=sync: the client gets CODE_INTERNAL_ERROR"
      : "ack=async: the client got its success; failed batches are lost";
    renderRules(f);
    const kinds = Object.keys(s.fault_counters).sort();
    fillBody("fault-counters", kinds.map((k) => [k, ...TRANSPORTS.map((t) => num(s.fault_counters[k][t] || 0, `faultcount-${k}-${t}`))]));
  }

  // ---------------------------------------------------------------- capacity

  async function applyOverload() {
    const number = (id) => ($(id).value === "" ? null : Number($(id).value));
    const settings = {
      capacity_events_per_second: number("overload-capacity"),
      gateway_queue_depth: number("overload-depth"),
      gateway_status: Number($("overload-status").value),
      gateway_retry_after: number("overload-retry") || 0,
    };
    await postControl("/_emulator/overload", settings, "overload-error", "capacity change");
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

  async function connect() {
    await session;  // the cookie first: the stream cannot send a header
    const source = new EventSource("/_emulator/ui/stream");
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
