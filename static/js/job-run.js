/* A run's page, live: status badge, phases, message, exit code and log lines from the
 * run's websocket stream (apps/jobs/consumers.py), through static/js/live-stream.js (the
 * connection, resumed by number, and the log panel). Configured by data- attributes on
 * #job-run; no inline script (the site's CSP forbids it). The engine's status messages are
 * {"type": "run", "status", "message", "exit_code", ...} (apps.jobs.runs.run_published).
 * When the run ends while the page is open, the parts the stream does not carry (duration,
 * cost, the actions, outputs with their links, attempts) are fetched again from this page's
 * own address and swapped in, so the log panel keeps its lines. */
(function () {
  "use strict";

  var root = document.getElementById("job-run");
  if (!root || !window.WebSocket || !window.LatticeLive) { return; }

  var LABELS = {
    queued: "Queued", placing: "Placing", starting: "Starting", running: "Running",
    succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled", timed_out: "Timed out",
    lost: "Lost"
  };
  var STEPS = ["queued", "placing", "starting", "running", "ended"];
  var OPEN = ["queued", "placing", "starting", "running"];
  var REFRESHED = ["jb-facts", "jb-actions", "jb-outputs", "jb-attempts"];

  var badge = document.getElementById("status-badge");
  var phases = document.getElementById("jb-phases");
  var message = document.getElementById("jb-message");
  var connection = document.getElementById("jb-connection");
  var log = window.LatticeLive.logPanel(
    document.getElementById("log-panel"),
    document.getElementById("jb-log-pause"),
    document.getElementById("jb-log-follow"),
    document.getElementById("jb-log-buffered")
  );

  function drawPhases(status) {
    if (!phases) { return; }
    var step = STEPS.indexOf(status) >= 0 ? status : (LABELS[status] ? "ended" : "");
    var current = STEPS.indexOf(step);
    var items = phases.querySelectorAll("[data-phase]");
    for (var i = 0; i < items.length; i++) {
      var index = STEPS.indexOf(items[i].getAttribute("data-phase"));
      var done = current >= 0 && (index < current || step === "ended");
      items[i].classList.toggle("nb-phase-done", done);
      items[i].classList.toggle("nb-phase-current", !done && index === current);
      if (!done && index === current) {
        items[i].setAttribute("aria-current", "step");
      } else {
        items[i].removeAttribute("aria-current");
      }
    }
  }

  // The run's ended parts as the server renders them now (outputs are saved before the run
  // says it ended, so one fetch finds them).
  function refreshEnded() {
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        REFRESHED.forEach(function (id) {
          var now = document.getElementById(id);
          var then = fresh.getElementById(id);
          if (now && then) { now.replaceWith(document.importNode(then, true)); }
        });
      })
      .catch(function () { /* the page still says how it ended; a reload shows the rest */ });
  }

  function drawStatus(status) {
    if (!status || !status.status) { return; }
    var was = root.getAttribute("data-status");
    root.setAttribute("data-status", status.status);
    if (OPEN.indexOf(was) >= 0 && OPEN.indexOf(status.status) < 0) { refreshEnded(); }
    if (badge) {
      badge.className = "badge jb-badge jb-badge-" + status.status;
      badge.textContent = status.label || LABELS[status.status] || status.status;
    }
    if (message && typeof status.message === "string") { message.textContent = status.message; }
    var exitCode = document.getElementById("jb-exit-code");
    if (exitCode && typeof status.exit_code === "number") { exitCode.textContent = String(status.exit_code); }
    drawPhases(status.status);
  }

  drawPhases(root.getAttribute("data-status"));

  window.LatticeLive.connect(root.getAttribute("data-ws-path"), {
    say: function (text) { if (connection) { connection.textContent = text; } },
    lostAccess: "You no longer have access to this run.",
    message: function (data) {
      if (data.type === "hello") {
        drawStatus(data.status);
        if (data.restarted) { log.clear(); }
      } else if (data.type === "run" || data.type === "status") {
        drawStatus(data);
      } else if (data.type === "logs") {
        if (data.backfill) { log.clear(); }
        log.append(data.lines);
      } else if (data.type === "gap") {
        log.note("some lines are no longer kept");
      } else if (data.type === "skipped") {
        log.note("some lines were skipped: the page could not keep up");
      }
    }
  });
}());
