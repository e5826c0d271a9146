// Small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // <form data-confirm="Question?">: ask before submitting a destructive action.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    // <button data-copy="text">: copy to the clipboard.
    var copy = target.closest("[data-copy]");
    if (copy && navigator.clipboard) {
      navigator.clipboard.writeText(copy.getAttribute("data-copy")).then(function () {
        var label = copy.textContent;
        copy.textContent = "Copied";
        window.setTimeout(function () { copy.textContent = label; }, 1500);
      });
    }
    if (target.closest("[data-print]")) {
      window.print();
    }
  });

  // <div data-progress-url="/…/progress.json"> with a <progress> and a [data-progress-text] inside:
  // poll the JSON ({status, done, total, message}) once a second, reload when the job ends
  // (statuses "queued", "pending" and "running" mean it is still going).
  function poll(box) {
    var url = box.getAttribute("data-progress-url");
    var bar = box.querySelector("progress");
    var text = box.querySelector("[data-progress-text]");
    var tries = 0;
    function tick() {
      tries += 1;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (job) {
          if (bar && job.total) { bar.max = job.total; bar.value = job.done; }
          if (text) { text.textContent = job.message || (job.done + " of " + job.total); }
          if (job.status === "running" || job.status === "pending" || job.status === "queued") {
            if (tries < 3600) window.setTimeout(tick, 1000);
          } else {
            window.location.reload();
          }
        })
        .catch(function () { if (tries < 3600) window.setTimeout(tick, 3000); });
    }
    tick();
  }
  document.querySelectorAll("[data-progress-url]").forEach(poll);
})();
