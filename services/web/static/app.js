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

  // ---- the chain picture, from a Lookup's trace ----

  // The fields of a record in zone-file form: owner ttl class type rdata.
  function rr(text) {
    const f = String(text).split(" ");
    return { owner: f[0], ttl: f[1], type: f[3], data: f.slice(4).join(" ") };
  }

  // missed says how a DNS step found nothing: its rcode, NODATA for an
  // empty NOERROR answer, or its error; "" when it found records.
  function missed(s) {
    if (s.error) return s.rcode || "error";
    if (s.rcode && s.rcode !== "NOERROR") return s.rcode;
    if (s.rcode === "NOERROR" && !(s.answers || []).length) return "NODATA";
    return "";
  }

  function stepMeta(s) {
    const meta = [];
    if (s.server) meta.push("asked " + s.server);
    if (s.rcode) meta.push(s.rcode);
    const ans = s.answers || [];
    if (ans.length && rr(ans[0]).ttl) meta.push("ttl " + rr(ans[0]).ttl);
    if (s.duration_us) meta.push(s.duration_us >= 1000 ? (s.duration_us / 1000).toFixed(1) + " ms" : s.duration_us + " µs");
    return meta.join(" · ");
  }

  const queryLabels = { srv: "SRV query", mx: "MX query", address: "address query" };

  // chainBoxes draws a trace (resolver.Chain JSON) as the chain name → DNS
  // record → host → address → port → process. procs, when given, are the
  // registry's processes at the candidates. A failed lookup ends at its
  // failing steps, in red, with their rcodes.
  function chainBoxes(t, procs) {
    const failed = !!t.error;
    const steps = (t.steps || []).filter((s) => s.step !== "connect");
    const cands = t.candidates || [];
    const boxes = [];
    const norm = steps.find((s) => s.step === "normalize");
    boxes.push(box("name", "name", t.name, norm && norm.answers ? norm.answers[0] : "symbolic name"));
    let hostShown = false;
    let portFrom = "";
    let via = ""; // the record that named the host: SRV or MX
    for (const s of steps) {
      if (s.step === "normalize") continue;
      const miss = missed(s);
      if (s.step === "well-known") {
        if (!portFrom) portFrom = "well-known port, from the IANA catalog built in";
        if (failed) boxes.push(box("port", "well-known port", (s.answers || []).concat([s.question]), s.skipped));
        continue;
      }
      if (s.step === "address" && !hostShown && cands.length) {
        hostShown = true;
        const hosts = [...new Set(cands.map((c) => c.host))];
        boxes.push(box("host", "host", hosts, via ? "the " + via + " target" : "the name itself"));
      }
      const kind = s.step === "address" ? "addr" : "dns";
      const values = [s.question].concat(miss ? [miss] : (s.answers || []).map((a) => rr(a).data));
      const b = box(miss ? (failed ? "error" : "miss") : kind, queryLabels[s.step] || s.step, values, stepMeta(s));
      if (s.cached) b.append(el("span", { class: "meta" }, badge("cached", "cached"), " answered from the resolver's cache"));
      if (s.skipped) b.append(el("span", { class: "meta" }, s.skipped));
      if (s.error) b.append(el("span", { class: "meta err" }, s.error));
      if (!miss && (s.step === "srv" || s.step === "mx")) {
        via = s.step.toUpperCase();
        if (!portFrom) portFrom = s.step === "srv" ? "from the SRV record" : "the mail port";
      }
      boxes.push(b);
    }
    if (failed) {
      // The error names every step; its last part is the conclusion.
      const msg = t.error.slice(t.error.lastIndexOf("; ") + 1).replace(new RegExp("^\\s*" + (t.name || "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + ":\\s*"), "").trim();
      boxes.push(box("error", "no process", "not reachable", msg));
      return boxes;
    }
    if (cands.length) {
      boxes.push(box("port", "port", [...new Set(cands.map((c) => String(c.port)))], (portFrom || "given") + " · picks the process"));
    }
    if (procs) {
      boxes.push(procs.length
        ? box("proc", "process", procs.map((p) => p.process), procs.map((p) => (p.instance ? p.instance + " at " : "") + p.endpoint).join(", "))
        : box("proc", "process", "not in the registry", "the chain points where no registered instance is"));
    }
    return boxes;
  }

  // ---- the directory: one card per service type ----

  let services = null; // the registry's instances, from the "services" event
  let chains = null;   // the Lookups, from the "chains" event

  function renderAll() {
    if (!services) return;
    const root = $("services");
    const list = services;
    $("count").textContent = "(" + list.length + (list.length === 1 ? " instance)" : " instances)");
    if (!list.length) {
      root.replaceChildren(el("p", { class: "empty" }, "No service is registered. Try: annuaire register echo 7007"));
      return;
    }
    const types = new Map();
    for (const s of list) {
      const k = "_" + s.name + "._" + s.proto;
      if (!types.has(k)) types.set(k, []);
      types.get(k).push(s);
    }
    const byType = new Map(((chains && chains.chains) || []).map((c) => [c.type, c]));
    const cards = [...types.keys()].sort().map((k) => renderType(k, types.get(k), byType.get(k)));
    if (chains && chains.omitted) cards.push(el("p", { class: "note" }, chains.omitted + " more service types are listed without a chain: the page looks up at most " + chains.chains.length + "."));
    root.replaceChildren(...cards);
  }

  function renderType(type, insts, tc) {
    const first = insts[0];
    const passing = insts.filter((s) => s.health !== "critical").length;
    const lookupName = first.name + (first.proto === "tcp" ? "" : "/" + first.proto);
    const card = el("article", { class: "service" + (passing ? "" : " critical"), "data-type": type },
      el("h3", null, first.name, el("span", { class: "type mono" }, type),
        badge(passing + "/" + insts.length + " passing", passing ? "passing" : "critical")));

    // The picture: the client's Lookup, as `annuaire lookup NAME` runs it.
    if (tc && tc.trace) {
      card.append(chainList(chainBoxes(tc.trace, tc.processes || [])));
    } else if (tc) {
      card.append(el("p", { class: "err" }, "lookup " + lookupName + ": " + tc.error));
    } else {
      card.append(el("p", { class: "empty" }, chains ? "looking up " + lookupName + "…" : "waiting for the lookups…"));
    }
    if (tc && chains) {
      const when = new Date(chains.at);
      card.append(el("p", { class: "age meta" },
        "Chain from ", el("code", null, "annuaire lookup " + lookupName), " at ", when.toLocaleTimeString(),
        " (serial " + chains.serial + "), ",
        chains.fresh ? "asked DNS afresh, no cache" : "answers may come from the resolver's cache, up to their TTL old"));
    }

    // The directory: what the registry holds for this type.
    const head = ["instance", "host", "address", "port", "health", "prio/weight", "check", "id"];
    card.append(el("table", { class: "instances" },
      el("thead", null, el("tr", null, head.map((h) => el("th", null, h)))),
      el("tbody", null, insts.map((s) => {
        const addrs = s.addresses || [];
        const cells = [
          el("span", { class: "mono" }, s.instance || ""),
          el("span", { class: "mono" }, s.host),
          el("span", { class: "mono" }, addrs.length ? addrs.join(", ") : "none"),
          String(s.port),
          badge(s.health || "passing"),
          s.priority + "/" + s.weight,
          s.check ? s.check.type + (s.check.target ? " " + s.check.target : "") + " every " + s.check.interval : "—",
          el("span", { class: "mono" }, s.id),
        ];
        return el("tr", { "data-id": s.id, class: s.health === "critical" ? "critical" : null },
          cells.map((c, i) => el("td", { "data-label": head[i] }, c)));
      }))));
    if (insts.length > passing) card.append(el("p", { class: "note" }, "Critical: DNS leaves an instance out of its answers until its check passes again."));
    const proc = tc && (tc.processes || [])[0];
    if (proc) {
      const [host, port] = splitEndpoint(proc.endpoint);
      card.append(el("p", { class: "try" }, "Try it: ", el("code", null, (first.proto === "udp" ? "nc -u " : "nc ") + host + " " + port)));
    }
    return card;
  }

  function renderServices(list) { services = list; renderAll(); }
  function renderChains(set) { chains = set; renderAll(); }

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
      .then(() => fetch("/api/chains", { cache: "no-store" }))
      .then((r) => r.ok ? r.json().then(renderChains) : null)
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
    es.addEventListener("chains", (ev) => renderChains(JSON.parse(ev.data)));
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

  function renderTrace(t) {
    const out = [];
    const head = el("p", null, "Name ", el("code", null, t.name || ""));
    if (t.service) head.append(" → service ", el("code", null, t.service + (t.proto ? "/" + t.proto : "")));
    if (t.zone) head.append(" in zone ", el("code", null, t.zone));
    out.push(head);
    out.push(chainList(chainBoxes(t, null)));
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
