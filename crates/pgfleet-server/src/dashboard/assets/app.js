// pgfleet dashboard: live rollout progress (server-sent events). Everything else works without
// JavaScript.
"use strict";
(function () {
  function update(box, r) {
    var state = box.querySelector("#rollout-state");
    var bar = box.querySelector("#rollout-progress");
    var counts = box.querySelector("#rollout-counts");
    if (state) { state.textContent = r.state; state.className = "state"; }
    if (bar) { bar.max = Math.max(1, r.total); bar.value = r.done; bar.textContent = r.done + "/" + r.total; }
    if (counts) {
      counts.textContent = r.done + " of " + r.total + " done · " + r.migrated + " migrated · " +
        r.up_to_date + " up to date · " + r.failed + " failed · " + r.not_run + " not run";
    }
  }
  document.querySelectorAll("[data-rollout-stream]").forEach(function (box) {
    if (!window.EventSource) return;
    var es = new EventSource(box.getAttribute("data-rollout-stream"));
    es.addEventListener("progress", function (e) { update(box, JSON.parse(e.data)); });
    es.addEventListener("end", function (e) {
      update(box, JSON.parse(e.data));
      es.close();
      // The failures list is rendered by the server: show it once the run ended.
      if (document.getElementById("failures")) { window.setTimeout(function () { window.location.reload(); }, 300); }
    });
    // The server could not read the rollout: say so and stop (no reconnecting).
    es.addEventListener("problem", function (e) {
      es.close();
      var state = box.querySelector("#rollout-state");
      try { if (state) state.textContent = "unknown: " + JSON.parse(e.data).detail; } catch (_) {}
    });
    // A dropped connection (or the stream's 10-minute end): the browser connects again by itself.
  });
})();
