/* A notebook's page, live: status badge, start phases, buttons and log lines from the
 * notebook's websocket stream (apps/notebooks/consumers.py). Configured by data- attributes
 * on #notebook; no inline script (the site's CSP forbids it).
 *
 * The stream numbers its messages ("seq"). We keep the last number seen and reconnect with
 * ?after=<seq>&epoch=<the hello's epoch>, so a dropped connection misses nothing and repeats nothing; a "gap" message
 * says the server no longer had some of it. A hello that says the stream "restarted" (its
 * buffer was made again, with another epoch, and its numbers started over) resets ours; a "backfill" of log lines (an agent that found the
 * notebook running again) replaces the lines shown. */
(function () {
  "use strict";

  var root = document.getElementById("notebook");
  if (!root || !window.WebSocket) { return; }

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
  var panel = document.getElementById("log-panel");
  var pauseButton = document.getElementById("nb-log-pause");
  var followButton = document.getElementById("nb-log-follow");
  var buffered = document.getElementById("nb-log-buffered");
  var maxLines = parseInt(panel && panel.getAttribute("data-max-lines"), 10) || 5000;

  var lastSeq = 0;
  var epoch = "";  // the stream buffer's epoch our numbers belong to (from the hello)
  var socket = null;
  var retryDelay = 1000;
  var retryTimer = null;
  var pingTimer = null;
  var stopped = false;
  var following = true;
  var held = [];  // lines that arrived while paused

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

  // --- logs -----------------------------------------------------------------------------

  function trim() {
    var extra = panel.childNodes.length - maxLines;
    while (extra-- > 0) { panel.removeChild(panel.firstChild); }
  }

  function append(lines) {
    if (!panel || !lines || !lines.length) { return; }
    if (!following) {
      Array.prototype.push.apply(held, lines);
      if (held.length > maxLines) { held.splice(0, held.length - maxLines); }
      buffered.hidden = false;
      buffered.textContent = held.length + " new line" + (held.length === 1 ? "" : "s");
      return;
    }
    var fragment = document.createDocumentFragment();
    for (var i = 0; i < lines.length; i++) {
      var line = document.createElement("span");
      line.className = "nb-log-line";
      line.textContent = String(lines[i]).replace(/\n$/, "") + "\n";
      fragment.appendChild(line);
    }
    panel.appendChild(fragment);
    trim();
    panel.scrollTop = panel.scrollHeight;
  }

  function clearLog() {
    held = [];
    if (buffered) { buffered.hidden = true; }
    if (panel) { panel.replaceChildren(); }
  }

  function note(text) {
    append(["[" + text + "]"]);
  }

  function pause() {
    following = false;
    pauseButton.hidden = true;
    followButton.hidden = false;
  }

  function follow() {
    following = true;
    pauseButton.hidden = false;
    followButton.hidden = true;
    buffered.hidden = true;
    var lines = held;
    held = [];
    append(lines);
  }

  if (pauseButton && followButton) {
    pauseButton.addEventListener("click", pause);
    followButton.addEventListener("click", follow);
  }

  // --- the connection -------------------------------------------------------------------

  function say(text) {
    if (connection) { connection.textContent = text; }
  }

  function url() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var path = root.getAttribute("data-ws-path");
    var query = lastSeq ? "?after=" + lastSeq + (epoch ? "&epoch=" + encodeURIComponent(epoch) : "") : "";
    return scheme + window.location.host + path + query;
  }

  function onMessage(event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    if (typeof data.seq === "number") {
      if (data.seq <= lastSeq) { return; }  // already seen
      lastSeq = data.seq;
    }
    if (data.type === "hello") {
      retryDelay = 1000;
      say("");
      if (data.restarted || (typeof data.last === "number" && data.last < lastSeq)) {
        lastSeq = 0;  // the stream started over (the server restarted): take its numbers
      }
      if (typeof data.epoch === "string") { epoch = data.epoch; }
      drawStatus(data.status);
    } else if (data.type === "status") {
      drawStatus(data);
    } else if (data.type === "logs") {
      if (data.backfill) { clearLog(); }  // the workload's recent lines, instead of ours
      append(data.lines);
    } else if (data.type === "gap") {
      note("some log lines were missed while disconnected");
    }
  }

  function connect() {
    retryTimer = null;
    try {
      socket = new WebSocket(url());
    } catch (e) {
      retry();
      return;
    }
    socket.addEventListener("message", onMessage);
    socket.addEventListener("open", function () {
      pingTimer = window.setInterval(function () {
        if (socket && socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify({ type: "ping" }));
        }
      }, 25000);
    });
    socket.addEventListener("close", function (event) {
      window.clearInterval(pingTimer);
      socket = null;
      if (stopped) { return; }
      if (event.code === 4404 || event.code === 4403 || event.code === 4401) {
        say("You no longer have access to this notebook's live status.");
        return;
      }
      retry();
    });
  }

  function retry() {
    if (retryTimer || stopped) { return; }
    say("Reconnecting…");
    retryTimer = window.setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  window.addEventListener("pagehide", function () {
    stopped = true;
    if (socket) { socket.close(); }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && stopped) {  // back from the back/forward cache
      stopped = false;
      connect();
    }
  });

  connect();
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
