// Batches page: drop a file on the upload area to choose it (the file input still works alone).
(function () {
  "use strict";

  function setUp() {
    var zone = document.getElementById("dropzone");
    if (!zone) return;
    var input = zone.querySelector("input[type=file]");
    var chosen = document.getElementById("dropzone-chosen");

    function show() {
      chosen.textContent = input.files.length ? "Chosen: " + input.files[0].name : "";
    }

    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () {
        zone.classList.remove("over");
      });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        show();
      }
    });
    input.addEventListener("change", show);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
