/* A notebook's page, live: status badge, start phases, buttons and log lines from the
 * notebook's websocket stream (apps/notebooks/consumers.py), through static/js/live-stream.js
 * (the connection, resumed by number, and the log panel). Configured by data- attributes
 * on #notebook; no inline script (the site's CSP forbids it).
 *
 * A "gap" message says the server no longer had some of the stream; a "backfill" of log
 * lines (an agent that found the notebook running again) replaces the lines shown. */
(function () {
  "use strict";

  var root = document.getElementById("notebook");
  if (!root || !window.WebSocket || !window.LatticeLive) { return; }

  var LABELS = {
    queued: "Queued", scheduled: "Scheduled", pulling: "Pulling image", starting: "Starting",
    running: "Running", stopping: "Stopping", stopped: "Stopped", failed: "Failed", lost: "Lost"
  };
  var STEPS = ["queued", "placed", "pulling", "starting", "waiting", "ready"];
  var STEP_OF_STATUS = {
    queued: "queued", scheduled: "placed", pulling: "pulling", starting: "starting", running: "ready"
  };
  var OPEN_STATUSES = ["queued", "scheduled", "pulling", "starting", "running", "stopping"];

  var badge = document.getElementById("status-badge");
  var phases = document.getElementById("nb-phases");
  var pull = document.getElementById("nb-pull");
  var message = document.getElementById("nb-message");
  var eta = document.getElementById("nb-eta");
  var idle = document.getElementById("nb-idle");
  var idleAt = document.getElementById("nb-idle-at");
  var idleRule = document.getElementById("nb-idle-rule");
  var connection = document.getElementById("nb-connection");
  var log = window.LatticeLive.logPanel(
    document.getElementById("log-panel"),
    document.getElementById("nb-log-pause"),
    document.getElementById("nb-log-follow"),
    document.getElementById("nb-log-buffered")
  );

  // --- status ---------------------------------------------------------------------------

  function stepOf(status) {
    var step = status.phase === "waiting" ? "waiting" : STEP_OF_STATUS[status.status] || "";
    if (OPEN_STATUSES.indexOf(status.status) < 0 || status.status === "stopping") { return ""; }
    return step;
  }

  // The percent a host measured, or null: with none, the bar moves without a number (a
  // build step Docker does not count), never a made-up one.
  function percentOf(status) {
    return typeof status.percent === "number" ? status.percent : null;
  }

  function drawPhases(status) {
    if (!phases) { return; }
    var step = stepOf(status);
    phases.hidden = !step;
    phases.setAttribute("data-step", step);
    var current = STEPS.indexOf(step);
    var items = phases.querySelectorAll("[data-phase]");
    for (var i = 0; i < items.length; i++) {
      var index = STEPS.indexOf(items[i].getAttribute("data-phase"));
      var done = current >= 0 && (index < current || step === "ready");
      items[i].classList.toggle("nb-phase-done", done);
      items[i].classList.toggle("nb-phase-current", !done && index === current);
      if (!done && index === current) {
        items[i].setAttribute("aria-current", "step");
      } else {
        items[i].removeAttribute("aria-current");
      }
    }
    if (pull) {
      pull.hidden = step !== "pulling";
      var percent = percentOf(status);
      if (percent === null) {
        pull.removeAttribute("value");
        pull.textContent = "";
      } else {
        pull.value = percent;
        pull.textContent = percent + "%";
      }
    }
  }

  function drawButtons(status) {
    var shown = document.querySelectorAll("[data-show-when]");
    for (var i = 0; i < shown.length; i++) {
      var when = shown[i].getAttribute("data-show-when").split(" ");
      shown[i].hidden = when.indexOf(status.status) < 0;
    }
  }

  function drawStatus(status) {
    if (!status || !status.status) { return; }
    root.setAttribute("data-status", status.status);
    if (badge) {
      badge.textContent = LABELS[status.status] || status.status;
      badge.className = "badge nb-badge nb-badge-" + status.status;
    }
    if (message) { message.textContent = status.message || LABELS[status.status] || ""; }
    if (eta) {
      // Only an estimate from real data: the server leaves it empty otherwise.
      eta.hidden = !status.eta_text;
      eta.textContent = status.eta_text || "";
    }
    if (idle) {
      idle.hidden = !status.idle_stop_at;
      if (status.idle_stop_at && idleAt) {
        var at = new Date(status.idle_stop_at);
        idleAt.setAttribute("datetime", status.idle_stop_at);
        idleAt.textContent = isNaN(at.getTime()) ? status.idle_stop_at : at.toLocaleTimeString();
      }
    }
    if (idleRule) {
      // Only a notebook on its way up or running counts down to an idle stop.
      idleRule.hidden = OPEN_STATUSES.indexOf(status.status) < 0 || status.status === "stopping";
    }
    drawPhases(status);
    drawButtons(status);
    drawEnded(status);
  }

  // The row of a session that just ended, in the table of recent sessions.
  function drawEnded(status) {
    if (!status.ended_at || !status.session) { return; }
    var row = document.querySelector('tr[data-session="' + status.session + '"]');
    if (!row) { return; }
    var ended = row.querySelector('[data-testid="session-ended"]');
    var reason = row.querySelector('[data-testid="session-reason"]');
    if (ended) {
      var time = document.createElement("time");
      var at = new Date(status.ended_at);
      time.setAttribute("datetime", status.ended_at);
      time.textContent = isNaN(at.getTime()) ? status.ended_at : at.toLocaleString();
      ended.replaceChildren(time);
    }
    if (reason) { reason.textContent = status.exit_reason || "—"; }
  }

  // --- the connection -------------------------------------------------------------------

  function say(text) {
    if (connection) { connection.textContent = text; }
  }

  function onMessage(data) {
    if (data.type === "hello") {
      drawStatus(data.status);
    } else if (data.type === "status") {
      drawStatus(data);
    } else if (data.type === "logs") {
      if (data.backfill) { log.clear(); }  // the workload's recent lines, instead of ours
      log.append(data.lines);
    } else if (data.type === "gap") {
      log.note("some log lines were missed while disconnected");
    } else if (data.type === "skipped") {
      log.note("some log lines were skipped: the page could not keep up");
    }
  }

  window.LatticeLive.connect(root.getAttribute("data-ws-path"), {
    message: onMessage,
    say: say,
    lostAccess: "You no longer have access to this notebook's live status."
  });
}());

/* The save form: "New model's name" is for "A new model" only. With an existing model
 * chosen it is hidden and disabled (not sent); the server refuses both anyway. */
(function () {
  "use strict";

  var choice = document.querySelector("[data-new-model-choice]");
  var field = document.querySelector("[data-new-model-name]");
  if (!choice || !field) { return; }
  var input = field.querySelector("input");

  function update() {
    var isNew = choice.value === "";
    field.hidden = !isNew;
    input.disabled = !isNew;
  }
  choice.addEventListener("change", update);
  update();
}());
