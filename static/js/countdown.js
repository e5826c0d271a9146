// Live countdowns: <time data-countdown datetime="2031-01-01T00:00:00+00:00">3 days 4 hours left</time>.
// The server renders the text; this keeps it current (same words as payments/countdown.py).
(function () {
  "use strict";
  var URGENT = 48 * 3600;

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function words(seconds) {
    if (seconds <= 0) return "overdue";
    var days = Math.floor(seconds / 86400);
    var hours = Math.floor((seconds % 86400) / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var text;
    if (days) text = plural(days, "day") + (hours ? " " + plural(hours, "hour") : "");
    else if (hours) text = plural(hours, "hour") + (minutes ? " " + plural(minutes, "minute") : "");
    else if (minutes) text = plural(minutes, "minute");
    else text = "less than a minute";
    return text + " left";
  }

  function update() {
    var now = Date.now();
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("datetime"));
      if (isNaN(due)) return;
      var seconds = Math.floor((due - now) / 1000);
      el.textContent = words(seconds);
      el.classList.remove("due-later", "due-urgent", "due-overdue");
      el.classList.add(seconds <= 0 ? "due-overdue" : seconds < URGENT ? "due-urgent" : "due-later");
    });
  }

  update();
  window.setInterval(update, 30000);
})();
