// The annuaire page: draws the directory from /api/events (or /api/services
// when the browser cannot stream) and runs names through /api/lookup.
// Everything is built with textContent: the registry's strings are data,
// never markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // el("div", {class: "x"}, child, "text", ...) builds an element.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // box draws one link of the chain; values are lines of text.
  function box(kind, label, values, meta, extra) {
    const vs = (Array.isArray(values) ? values : [values]).filter((v) => v !== undefined && v !== null && v !== "");
    return el("div", { class: "box " + kind + (extra ? " " + extra : "") },
      el("span", { class: "label" }, label),
      vs.length ? vs.map((v) => el("span", { class: "value mono" }, v)) : el("span", { class: "value meta" }, "—"),
      meta ? el("span", { class: "meta" }, meta) : null);
  }

  // chainList joins boxes with arrows; each arrow stays with the box it
  // points to, so a wrapped line starts with "→ box", never ends with "→".
  function chainList(boxes) {
    return el("ol", { class: "chain" }, boxes.map((b, i) =>
      el("li", { class: "step" }, i > 0 ? el("span", { class: "arrow", "aria-hidden": "true" }, "→") : null, b)));
  }

  function badge(text, kind) {
    return el("span", { class: "badge " + (kind || text) }, text);
  }

  // ---- the directory ----

  function renderServices(list) {
    const root = $("services");
    $("count").textContent = "(" + list.length + (list.length === 1 ? " instance)" : " instances)");
    if (!list.length) {
      root.replaceChildren(el("p", { class: "empty" }, "No service is registered. Try: annuaire register echo 7007"));
      return;
    }
    root.replaceChildren(...list.map(renderService));
  }

  function renderService(s) {
    const c = s.chain || {};
    const addrs = s.addresses || [];
    const healthy = s.health !== "critical";
    const boxes = [
      box("name", "name", c.name, "symbolic name"),
      box("dns", "DNS record", c.srv, "SRV priority weight port target"),
      box("host", "host", c.target, "the SRV target"),
      box("addr", "address", addrs, (c.records || []).length ? "from its A/AAAA records" : "no A/AAAA record"),
      box("port", "port", String(c.port), s.proto.toUpperCase() + " port: picks the process"),
      box("proc", "process", c.process, null),
    ];
    const ends = c.endpoints || [];
    const card = el("article", { class: "service" + (healthy ? "" : " critical"), "data-id": s.id },
      el("h3", null, s.name, el("span", { class: "type mono" }, "_" + s.name + "._" + s.proto), badge(s.health || "passing")),
      el("ul", { class: "facts" },
        el("li", null, el("b", null, "protocol"), s.proto),
        el("li", null, el("b", null, "host"), s.host),
        el("li", null, el("b", null, "address"), addrs.length ? addrs.join(", ") : "none"),
        el("li", null, el("b", null, "port"), String(s.port)),
        el("li", null, el("b", null, "priority/weight"), s.priority + "/" + s.weight),
        s.check ? el("li", null, el("b", null, "check"), s.check.type + (s.check.target ? " " + s.check.target : "") + " every " + s.check.interval) : null,
        el("li", null, el("b", null, "id"), el("span", { class: "mono" }, s.id))),
      chainList(boxes));
    if (!healthy) card.append(el("p", { class: "note" }, "Critical: DNS leaves this instance out of its answers until its check passes again."));
    if (ends.length) {
      const [host, port] = splitEndpoint(ends[0]);
      card.append(el("p", { class: "try" }, "Try it: ", el("code", null, (s.proto === "udp" ? "nc -u " : "nc ") + host + " " + port)));
    }
    return card;
  }

  function splitEndpoint(ep) {
    const i = ep.lastIndexOf(":");
    let host = ep.slice(0, i);
    if (host.startsWith("[")) host = host.slice(1, -1);
    return [host, ep.slice(i + 1)];
  }

  // ---- live updates ----

  let pollTimer = null;
  function setStatus(text, cls) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + (cls || "");
  }

  function poll() {
    fetch("/api/services", { cache: "no-store" })
      .then((r) => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))
      .then((list) => { renderServices(list); setStatus("live (polling every 2 s)", "live"); })
      .catch((e) => setStatus("cannot reach the server: " + e.message, "down"))
      .finally(() => { pollTimer = setTimeout(poll, 2000); });
  }

  function stream() {
    if (!window.EventSource) { poll(); return; }
    const es = new EventSource("/api/events");
    let failures = 0;
    es.addEventListener("services", (ev) => {
      failures = 0;
      renderServices(JSON.parse(ev.data));
      $("serial").textContent = ev.lastEventId || "?";
      setStatus("live: the page follows the registry as it changes", "live");
      loadMessages();
    });
    es.onerror = () => {
      failures++;
      setStatus("connection lost, reconnecting…", "down");
      if (failures >= 5) { // a proxy that cannot stream: fall back to polling
        es.close();
        if (!pollTimer) poll();
      }
    };
  }

  // ---- the lookup box ----

  const stepNames = {
    normalize: ["name", "name"],
    srv: ["dns", "SRV query"],
    mx: ["dns", "MX query"],
    address: ["addr", "address query"],
    "well-known": ["port", "well-known port"],
    connect: ["proc", "connect"],
  };

  function renderTrace(t) {
    const out = [];
    const head = el("p", null, "Name ", el("code", null, t.name || ""));
    if (t.service) head.append(" → service ", el("code", null, t.service + (t.proto ? "/" + t.proto : "")));
    if (t.zone) head.append(" in zone ", el("code", null, t.zone));
    out.push(head);
    const steps = (t.steps || []).map((s) => {
      const [kind, label] = stepNames[s.step] || ["dns", s.step || "step"];
      const meta = [];
      if (s.server) meta.push("asked " + s.server);
      if (s.rcode) meta.push(s.rcode);
      if (s.duration_us) meta.push(s.duration_us + " µs");
      const b = box(s.error ? "error" : kind, label,
        [s.question].concat(s.answers && s.answers.length ? s.answers : []),
        meta.join(" · "), s.skipped ? "skipped" : "");
      if (s.cached) b.append(el("span", { class: "meta" }, badge("cached", "cached")));
      if (s.skipped) b.append(el("span", { class: "meta" }, badge("skipped", "skipped"), typeof s.skipped === "string" ? " " + s.skipped : ""));
      if (s.error) b.append(el("span", { class: "meta err" }, s.error));
      return b;
    });
    if (steps.length) out.push(chainList(steps));
    const cands = t.candidates || [];
    if (cands.length) {
      out.push(el("table", { class: "candidates" },
        el("caption", { class: "meta" }, "Where the client connects, in order"),
        el("thead", null, el("tr", null, ["host", "address", "port", "priority", "weight"].map((h) => el("th", null, h)))),
        el("tbody", null, cands.map((c) => el("tr", null,
          el("td", { class: "mono" }, c.host), el("td", { class: "mono" }, c.address),
          el("td", null, String(c.port)), el("td", null, String(c.priority ?? "")), el("td", null, String(c.weight ?? "")))))));
    }
    if (t.error) out.push(el("p", { class: "err" }, t.error));
    return el("article", { class: "service lookup-card" }, out);
  }

  function lookup(name) {
    const res = $("lookup-result");
    res.replaceChildren(el("p", { class: "empty" }, "Looking up " + name + "…"));
    fetch("/api/lookup?name=" + encodeURIComponent(name), { cache: "no-store" })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        res.replaceChildren(ok ? renderTrace(body) : el("p", { class: "err" }, body.error || "lookup failed"));
      })
      .catch((e) => res.replaceChildren(el("p", { class: "err" }, "lookup failed: " + e.message)));
  }

  // ---- received mail ----

  function loadMessages() {
    fetch("/api/messages", { cache: "no-store" })
      .then((r) => r.ok ? r.json() : [])
      .then(renderMessages)
      .catch(() => {});
  }

  function pick(m, ...keys) {
    for (const k of keys) if (m[k] !== undefined && m[k] !== null && m[k] !== "") return m[k];
    return undefined;
  }

  function renderMessages(list) {
    if (!Array.isArray(list) || !list.length) { $("mail").hidden = true; return; }
    $("mail").hidden = false;
    $("messages").replaceChildren(...list.map((m) => {
      if (typeof m !== "object" || m === null) return el("li", null, String(m));
      const from = pick(m, "from", "From", "sender");
      let to = pick(m, "to", "To", "rcpt", "recipients");
      if (Array.isArray(to)) to = to.join(", ");
      const subject = pick(m, "subject", "Subject");
      let when = pick(m, "received", "time", "date", "Received");
      if (when && !isNaN(Date.parse(when))) when = new Date(when).toLocaleString();
      const body = pick(m, "body", "data", "Data", "text");
      return el("li", null,
        el("div", null, el("b", null, subject || "(no subject)")),
        el("div", { class: "meta" }, [from ? "from " + from : "", to ? "to " + to : "", when ? "at " + when : ""].filter(Boolean).join(" · ")),
        body ? el("pre", null, String(body)) : el("pre", null, JSON.stringify(m, null, 2)));
    }));
  }

  // ---- start ----

  fetch("/healthz", { cache: "no-store" }).then((r) => r.json()).then((h) => {
    $("zone").textContent = h.zone || "?";
    if ($("serial").textContent === "?") $("serial").textContent = h.serial;
  }).catch(() => {});

  $("lookup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("lookup-name").value.trim();
    if (name) lookup(name);
  });

  stream();
  loadMessages();
  setInterval(loadMessages, 5000);
})();
