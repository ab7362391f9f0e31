// The annuaire page works without this script: the server renders the
// directory, every chain, the lookup box's result (GET /?name=NAME) and
// the received mail. The script only keeps it live: it puts in place the
// directory the server renders again after each registry change (the
// /events stream), and runs the lookup box and refreshes the mail without
// reloading, from the page the server renders. It draws nothing itself.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  // The page's language, as the server chose it (?lang= or the browser's
  // Accept-Language): what the script fetches is drawn in it too, and
  // its own words come from the status line's data attributes.
  const lang = document.documentElement.lang;
  const withLang = (query) => lang === "en" ? query : (query ? query + "&" : "?") + "lang=" + encodeURIComponent(lang);
  const say = $("status").dataset;

  function setStatus(text, cls) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + (cls || "");
  }

  // page fetches the page as the server renders it (with ?name=NAME, the
  // lookup box's result too) and parses it, without running it.
  function page(query) {
    return fetch("/" + withLang(query || ""), { cache: "no-cache" })
      .then((r) => r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)))
      .then((html) => new DOMParser().parseFromString(html, "text/html"));
  }

  // swap puts the server's rendering of the elements named by ids in
  // place of the page's.
  function swap(doc, ...ids) {
    for (const id of ids) {
      const from = doc.getElementById(id), to = $(id);
      if (!from || !to) continue;
      to.replaceChildren(...from.childNodes);
      to.hidden = from.hidden;
    }
  }

  // ---- live updates ----

  let pollTimer = null;
  function poll() {
    page()
      .then((doc) => {
        swap(doc, "directory", "mail", "serial");
        setStatus(say.polling, "live");
      })
      .catch((e) => setStatus(say.down + " " + e.message, "down"))
      .finally(() => { pollTimer = setTimeout(poll, 2000); });
  }

  function stream() {
    if (!window.EventSource) { poll(); return; }
    // The page holds the directory of this serial: the stream starts
    // with the next change.
    const es = new EventSource("/events" + withLang("?serial=" + encodeURIComponent($("serial").textContent)));
    let failures = 0;
    es.onopen = () => {
      failures = 0;
      setStatus(say.live, "live");
    };
    es.addEventListener("directory", (ev) => {
      // The server's own rendering, escaped by html/template: markup
      // from the page's origin, like the page itself.
      $("directory").innerHTML = ev.data;
      if (ev.lastEventId) $("serial").textContent = ev.lastEventId;
      loadMessages();
    });
    es.onerror = () => {
      failures++;
      setStatus(say.lost, "down");
      if (failures >= 5) { // a proxy that cannot stream: fall back to polling
        es.close();
        if (!pollTimer) poll();
      }
    };
  }

  // ---- the lookup box ----

  function lookup(name) {
    const res = $("lookup-result");
    const wait = document.createElement("p");
    wait.className = "empty";
    wait.textContent = say.looking + " " + name + "…";
    res.replaceChildren(wait);
    const query = "?name=" + encodeURIComponent(name);
    page(query)
      .then((doc) => {
        swap(doc, "lookup-result");
        // A reload, or the address sent to someone, shows the same.
        history.replaceState(null, "", "/" + withLang(query));
      })
      .catch((e) => {
        const p = document.createElement("p");
        p.className = "err";
        p.textContent = say.failed + " " + e.message;
        res.replaceChildren(p);
      });
  }

  $("lookup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("lookup-name").value.trim();
    if (name) lookup(name);
  });

  // ---- received mail: not a registry change, so it is polled ----

  function loadMessages() {
    page().then((doc) => swap(doc, "mail")).catch(() => {});
  }

  stream();
  setInterval(loadMessages, 5000);
})();
