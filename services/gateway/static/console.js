// RaptorFlow console: live updates from /ui/events (Server-Sent Events), no polling loop.
// The pages work without this file; it only keeps them current.
(function () {
  "use strict";
  var body = document.body;
  var workspace = body.dataset.workspace;
  var page = body.dataset.page;
  var task = body.dataset.task;
  if (!workspace || !window.EventSource || (page !== "tasks" && page !== "task")) return;
  // From just before the page was rendered: nothing between render and connect is lost.
  var url = "/ui/events?workspace_id=" + encodeURIComponent(workspace) + "&since=" + body.dataset.since;
  if (page === "task") url += "&task_id=" + encodeURIComponent(task);
  var timer = null;
  // The latest status each event gave a task: the status view memory writes can lag the
  // event by a moment, so a page read just after an event may still show the older one.
  var known = {};

  function live(on) {
    var el = document.getElementById("live");
    if (!el) return;
    el.className = on ? "live on" : "live";
    el.textContent = on ? "live" : "reconnecting";
  }

  function setStatus(el, status) {
    el.textContent = status;
    el.className = "status " + status;
  }

  // Fetch this page again and swap its <main>, unless the reader is typing in a form.
  function refresh() {
    timer = null;
    var active = document.activeElement;
    if (active && active.form && active.form.closest("main")) return;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (fresh) {
          document.getElementById("main").innerHTML = fresh.innerHTML;
          reapply();
          live(true);
        }
      });
  }

  function reapply() {
    Object.keys(known).forEach(function (id) {
      var el = page === "tasks"
        ? document.querySelector('tr[data-task-id="' + CSS.escape(id) + '"] .status')
        : document.getElementById("task-status");
      if (el) setStatus(el, known[id]);
    });
  }

  function later() {
    if (timer) clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  var source = new EventSource(url);
  var dropped = false;
  // After a reconnect the page may have missed events: read it once more.
  source.onopen = function () { live(true); if (dropped) later(); };
  source.onerror = function () { live(false); dropped = true; };
  source.addEventListener("task", function (message) {
    var event = JSON.parse(message.data);
    if (event.status) known[event.task_id] = event.status;
    reapply();  // the status at once; the rest of the row or page just after
    later();
  });
})();
