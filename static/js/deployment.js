/* A deployment's page, live, from its websocket stream (apps/deployments/consumers.py)
 * through static/js/live-stream.js: the status badge and message, replicas' states, the
 * replicas' log lines, and four charts drawn with uPlot (static/vendor/uplot) from the
 * metrics snapshots (apps/deployments/live.py) that arrive every few seconds (each with
 * the deployment's status now: the controller's events say what happened, not what holds).
 *
 * Honest numbers: a step the gateway had not counted yet arrives as null and is drawn as a
 * gap, never as a zero; with no request ever, the note says so. No inline script (CSP). */
(function () {
  "use strict";

  var root = document.getElementById("deployment");
  if (!root || !window.WebSocket || !window.LatticeLive) { return; }

  var LABELS = {
    deploying: "Deploying", ready: "Ready", scaled_to_zero: "Scaled to zero",
    degraded: "Degraded", failed: "Failed", paused: "Paused"
  };
  var REPLICA_LABELS = {
    placing: "Placing", starting: "Starting", loading: "Loading the model", ready: "Ready",
    draining: "Draining", stopping: "Stopping", stopped: "Stopped", failed: "Failed", lost: "Lost"
  };
  var ENDED = ["stopped", "failed", "lost"];
  var COLOURS = ["#4f46e5", "#0891b2", "#16a34a", "#d97706", "#dc2626", "#7c3aed"];
  var STATUS_COLOURS = { "2xx": "#16a34a", "3xx": "#0891b2", "4xx": "#d97706", "5xx": "#dc2626" };

  var badge = document.getElementById("status-badge");
  var message = document.getElementById("dp-message");
  var connection = document.getElementById("dp-connection");
  var note = document.getElementById("dp-charts-note");
  var replicas = document.getElementById("dp-replicas");
  var log = window.LatticeLive.logPanel(
    document.getElementById("log-panel"),
    document.getElementById("nb-log-pause"),
    document.getElementById("nb-log-follow"),
    document.getElementById("nb-log-buffered")
  );
  var charts = {};  // name -> {plot, key}

  function say(text) {
    if (connection) { connection.textContent = text; }
  }

  // --- status and replicas ----------------------------------------------------------------

  function drawStatus(status) {
    if (!status || !status.status) { return; }
    root.setAttribute("data-status", status.status);
    if (badge) {
      badge.textContent = status.label || LABELS[status.status] || status.status;
      badge.className = "badge dp-badge dp-badge-" + status.status;
    }
    if (message) { message.textContent = status.message || status.label || LABELS[status.status] || ""; }
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function drawReplica(data) {
    if (!replicas || !data.replica) { return; }
    var row = replicas.querySelector('tr[data-replica="' + data.replica + '"]');
    var empty = replicas.querySelector('[data-testid="no-replicas"]');
    if (ENDED.indexOf(data.status) >= 0) {
      if (row) { row.remove(); }
      return;
    }
    if (!row) {
      if (empty) { empty.remove(); }
      row = document.createElement("tr");
      row.setAttribute("data-replica", data.replica);
      row.setAttribute("data-testid", "replica-" + data.replica);
      var state = document.createElement("td");
      var span = document.createElement("span");
      span.setAttribute("data-testid", "replica-state");
      state.appendChild(span);
      var revision = document.querySelector('tr[data-revision-id="' + data.revision + '"]');
      row.append(cell("dp-" + data.replica),
        cell(revision ? "r" + revision.getAttribute("data-revision-number") : ""),
        state, cell(data.host || "—"), cell("just now"));
      replicas.appendChild(row);
    }
    var badgeEl = row.querySelector('[data-testid="replica-state"]');
    badgeEl.textContent = REPLICA_LABELS[data.status] || data.status;
    badgeEl.className = "badge dp-replica-" + data.status;
  }

  function drawEvent(data) {
    var list = document.getElementById("dp-events");
    if (!list || !data.message) { return; }
    var item = document.createElement("li");
    var time = document.createElement("time");
    var at = new Date(data.at);
    time.setAttribute("datetime", data.at || "");
    time.textContent = isNaN(at.getTime()) ? "" : at.toLocaleTimeString();
    item.append(time, " " + data.message);
    list.insertBefore(item, list.firstChild);
  }

  // --- charts -----------------------------------------------------------------------------

  function width(el) {
    return Math.max(240, Math.floor(el.getBoundingClientRect().width) || 480);
  }

  function plot(name, series, data) {
    var el = root.querySelector('[data-chart="' + name + '"]');
    if (!el || !window.uPlot) { return; }
    var key = series.map(function (s) { return s.label; }).join("|");
    var existing = charts[name];
    if (existing && existing.key === key) {
      existing.plot.setData(data);
      return;
    }
    if (existing) { existing.plot.destroy(); }
    var opts = {
      width: width(el),
      height: 180,
      series: [{}].concat(series),
      axes: [{}, { size: 50 }],
      legend: { live: false }
    };
    charts[name] = { plot: new window.uPlot(opts, data, el), key: key };
    el.setAttribute("data-drawn", "true");
  }

  function line(label, colour) {
    return { label: label, stroke: colour, width: 2, spanGaps: false };
  }

  function column(points, pick) {
    return points.map(function (p) {
      var v = pick(p);
      return typeof v === "number" ? v : null;
    });
  }

  function drawCharts(snapshot) {
    var points = snapshot.points || [];
    var times = points.map(function (p) { return p.t; });
    var revisions = (snapshot.revisions || []).map(String);
    var numbers = snapshot.revision_numbers || {};
    var ever = !!snapshot.last_request_at;
    if (note) {
      note.hidden = ever;
      note.textContent = ever ? "" : "No requests yet: the charts fill in as requests come.";
    }
    // Requests per second, one line per revision (a step not counted yet: null, a gap).
    plot("rps", revisions.map(function (r, i) { return line("r" + (numbers[r] || "?"), COLOURS[i % COLOURS.length]); }),
      [times].concat(revisions.map(function (r) {
        return column(points, function (p) {
          return p.requests === null ? null : (p.rps && p.rps[r]) || 0;
        });
      })));
    var classes = ["2xx", "3xx", "4xx", "5xx"];
    plot("status", classes.map(function (c) { return line(c, STATUS_COLOURS[c]); }),
      [times].concat(classes.map(function (c) {
        return column(points, function (p) { return p.status ? p.status[c] : null; });
      })));
    // Percentiles are null in a step without requests: nothing to measure, nothing drawn.
    plot("latency", [line("p50", COLOURS[0]), line("p95", COLOURS[3]), line("p99", COLOURS[4])],
      [times,
        column(points, function (p) { return p.p50; }),
        column(points, function (p) { return p.p95; }),
        column(points, function (p) { return p.p99; })]);
    var ready = snapshot.replicas || [];
    plot("load", [line("in flight", COLOURS[0]), line("ready replicas", COLOURS[2])],
      [times,
        column(points, function (p) { return p.in_flight; }),
        times.map(function (_, i) { return typeof ready[i] === "number" ? ready[i] : null; })]);
    root.setAttribute("data-charts-at", String(times.length ? times[times.length - 1] : ""));
  }

  // --- the stream -------------------------------------------------------------------------

  function onMessage(data) {
    if (data.type === "hello") {
      drawStatus(data.status);
    } else if (data.type === "status") {
      drawStatus(data);
    } else if (data.type === "replica") {
      drawReplica(data);
    } else if (data.type === "event") {
      drawEvent(data);
    } else if (data.type === "metrics") {
      drawStatus(data.status);
      drawCharts(data);
    } else if (data.type === "logs") {
      if (data.backfill) { log.clear(); }
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
    lostAccess: "You no longer have access to this deployment's live status."
  });
}());
