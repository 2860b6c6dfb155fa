// The pair page's decision keys: 1 A, 2 B, 3 tie, 4 both bad, x exclude (each button names its
// key in data-key). Ignored while typing, and with a modifier held.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    var form = document.getElementById("adjudicate-form");
    if (!form) return;
    var key = event.key.toLowerCase();
    var button = form.querySelector('button[data-key="' + key + '"]');
    if (!button) return;
    event.preventDefault();
    form.requestSubmit(button);
  });
})();
