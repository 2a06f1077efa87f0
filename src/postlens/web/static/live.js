// Live overview: the server sends the overview's data again whenever new lines were summarised
// (server-sent events); the charts and numbers change in place, without a reload.
"use strict";
(function () {
  // the same words as the page's first rendering (app.py: _delay, trace.duration)
  function durationText(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return String(seconds) + " s";
    var s = Math.round(seconds);
    if (s < 3600) return (s % 60 && s < 600) ? Math.floor(s / 60) + " min " + (s % 60) + " s" : Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
  }

  function apply(o) {
    if (window.PostlensCharts) {
      window.PostlensCharts.update("traffic", o.traffic);
      window.PostlensCharts.update("received", o.received);
    }
    document.querySelectorAll("[data-total]").forEach(function (el) {
      var value = o.totals[el.dataset.total];
      if (value !== undefined) el.textContent = String(value);
    });
    document.querySelectorAll("[data-delay]").forEach(function (el) {
      el.textContent = durationText(o.delays[el.dataset.delay]);
    });
    var queue = document.getElementById("queue-size");
    if (queue) queue.textContent = String(o.queue.messages);
  }

  function start() {
    var box = document.querySelector("[data-live]");
    if (!box || !window.EventSource) return;
    var state = document.getElementById("live-state");
    var source = new EventSource(box.dataset.live);
    var updates = 0;
    source.addEventListener("overview", function (e) {
      updates += 1;
      document.body.dataset.liveUpdates = String(updates);
      apply(JSON.parse(e.data));
      if (state) state.textContent = "live · " + new Date().toLocaleTimeString();
    });
    source.onerror = function () {
      if (state) state.textContent = "live · reconnecting";
    };
  }

  document.addEventListener("DOMContentLoaded", start);
})();
