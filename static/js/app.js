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
})();
