// Copy buttons for secrets shown once (invitation links, API tokens). Markup:
//   <input id="X" readonly> <button type="button" data-copy="X" hidden>Copy</button>
//   <span id="X-copied" role="status"></span>
// The button starts hidden and is shown here, so without JavaScript only the (selectable) field
// shows. A file of its own: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function copy(field, said) {
    function done() { said.textContent = "Copied to the clipboard."; }
    function fallback() {
      field.focus();
      field.select();
      try {
        if (document.execCommand("copy")) { done(); return; }
      } catch (ignored) { /* old browsers throw instead of returning false */ }
      said.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, fallback);
    } else {
      fallback();
    }
  }

  function setUp() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var field = document.getElementById(button.getAttribute("data-copy"));
      var said = document.getElementById(button.getAttribute("data-copy") + "-copied");
      if (!field || !said) return;
      button.hidden = false;
      button.addEventListener("click", function () { copy(field, said); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
