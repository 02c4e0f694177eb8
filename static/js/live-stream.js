/* The pieces every live page shares (the notebook page, static/js/notebook.js; the
 * deployment page, static/js/deployment.js): a stream's websocket and a log panel.
 *
 * LatticeLive.connect(path, handlers) keeps one websocket to a stream
 * (apps.teams.consumers.TeamStreamConsumer) open. The stream numbers its messages ("seq"):
 * we keep the last number seen and reconnect with ?after=<seq>&epoch=<the hello's epoch>,
 * so a dropped connection misses nothing and repeats nothing. A hello that says the stream
 * "restarted" (its buffer was made again, with another epoch) resets our numbers.
 * handlers.message(data) gets every message not seen before (a hello too); handlers.say(text)
 * what the connection is doing ("" when fine). Unnumbered messages (snapshots) pass as they are.
 * The server batches live messages (a JSON array of them, at most one websocket message per
 * 50 ms): each reaches handlers.message on its own. A page that cannot keep up is sent
 * {"type": "skipped", "from": a, "to": b} (those numbers were dropped for it; the newest
 * follow), passed to handlers.message too; so is a "gap" (numbers the server no longer
 * holds). {"type": "restarted", "epoch": E} says the stream started over while we were
 * connected: we forget our numbers (what follows is numbered from 1 again).
 *
 * LatticeLive.logPanel(panel, pause, follow, buffered) appends lines to a <pre>, keeping
 * data-max-lines of them; while paused, new lines wait and are counted. */
(function () {
  "use strict";

  function logPanel(panel, pauseButton, followButton, buffered) {
    var maxLines = parseInt(panel && panel.getAttribute("data-max-lines"), 10) || 5000;
    var following = true;
    var held = [];

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

    function clear() {
      held = [];
      if (buffered) { buffered.hidden = true; }
      if (panel) { panel.replaceChildren(); }
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
    return {
      append: append,
      clear: clear,
      note: function (text) { append(["[" + text + "]"]); }
    };
  }

  function connect(path, handlers) {
    var lastSeq = 0;
    var epoch = "";  // the stream buffer's epoch our numbers belong to (from the hello)
    var socket = null;
    var retryDelay = 1000;
    var retryTimer = null;
    var pingTimer = null;
    var stopped = false;
    var say = handlers.say || function () {};

    function url() {
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var query = lastSeq ? "?after=" + lastSeq + (epoch ? "&epoch=" + encodeURIComponent(epoch) : "") : "";
      return scheme + window.location.host + path + query;
    }

    function onMessage(event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      // Live messages come several at once as a JSON array of them, in order.
      if (Array.isArray(data)) {
        for (var i = 0; i < data.length; i++) { take(data[i]); }
      } else {
        take(data);
      }
    }

    function take(data) {
      if (!data || typeof data !== "object") { return; }
      if (typeof data.seq === "number") {
        if (data.seq <= lastSeq) { return; }  // already seen
        lastSeq = data.seq;
      }
      if (data.type === "skipped" && typeof data.to === "number") {
        // We fell behind: the server dropped these for us and goes on with the newest.
        lastSeq = Math.max(lastSeq, data.to);
      }
      if (data.type === "restarted") {
        lastSeq = 0;  // the stream started over while connected: its numbers begin again
        if (typeof data.epoch === "string") { epoch = data.epoch; }
      }
      if (data.type === "hello") {
        retryDelay = 1000;
        say("");
        if (data.restarted || (typeof data.last === "number" && data.last < lastSeq)) {
          lastSeq = 0;  // the stream started over (the server restarted): take its numbers
        }
        if (typeof data.epoch === "string") { epoch = data.epoch; }
      }
      handlers.message(data);
    }

    function start() {
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
          say(handlers.lostAccess || "You no longer have access to this live status.");
          return;
        }
        retry();
      });
    }

    function retry() {
      if (retryTimer || stopped) { return; }
      say("Reconnecting…");
      retryTimer = window.setTimeout(start, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    }

    window.addEventListener("pagehide", function () {
      stopped = true;
      if (socket) { socket.close(); }
    });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted && stopped) {  // back from the back/forward cache
        stopped = false;
        start();
      }
    });

    start();
  }

  window.LatticeLive = { connect: connect, logPanel: logPanel };
}());
