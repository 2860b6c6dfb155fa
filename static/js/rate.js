/* The rater page: keyboard shortcuts, active time on task, and focus after each htmx swap.
   Every shortcut mirrors a visible control; without this file the page still works as forms.

   Keys (ignored while typing in a text box, and while the shortcuts dialog is open):
     1 left better · 2 right better · 3 tie · 4 both bad
     q slightly · w clearly · e much better (strength, with left or right only)
     Enter submit (Ctrl/Cmd+Enter also from the reason box) · s skip · f report · u undo
     g guidelines · ? this list                                                             */
(function () {
  "use strict";

  if (window.htmx) {
    // A refused judgment (422) or an undo too late (409) comes back as a card explaining why:
    // swap it in like a success instead of htmx's default of dropping 4xx bodies.
    window.htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "^(409|422)$", swap: true },
      { code: "[45]..", swap: false, error: true },
      { code: "...", swap: false },
    ];
  }

  var CHOICE_KEYS = { "1": "choice-left", "2": "choice-right", "3": "choice-tie", "4": "choice-both_bad" };
  var STRENGTH_KEYS = { q: "strength-1", w: "strength-2", e: "strength-3" };

  // From a request until the next card has settled: the card on screen is on its way out, and
  // htmx has not yet wired the new one (a submit then would be a full page post).
  var busy = false;

  /* Active time: the page visible and the window focused, since this pair was shown. */
  var active = { ms: 0, since: null, assignment: null };

  function isActive() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  function tick() {
    var now = performance.now();
    if (active.since !== null) active.ms += now - active.since;
    active.since = isActive() ? now : null;
  }

  function startTimingFor(card) {
    var id = card ? card.getAttribute("data-assignment") : "";
    if (id === active.assignment) return; // the same pair back with an error: keep counting
    active.assignment = id;
    active.ms = 0;
    active.since = isActive() ? performance.now() : null;
  }

  document.addEventListener("visibilitychange", tick);
  window.addEventListener("focus", tick);
  window.addEventListener("blur", tick);

  // Capture phase: runs before htmx turns the submit into a request, so the value goes along.
  document.addEventListener("submit", function (event) {
    if (!event.target || event.target.id !== "judgment-form") return;
    tick();
    var field = document.getElementById("active-ms");
    if (field) field.value = String(Math.round(active.ms));
  }, true);

  /* Controls */
  function syncStrength() {
    var strengths = document.getElementById("strengths");
    if (!strengths) return;
    var picked = document.querySelector("#judgment-form input[name=choice]:checked");
    strengths.disabled = !!picked && picked.value !== "left" && picked.value !== "right";
  }

  function pick(id) {
    var input = document.getElementById(id);
    if (!input || input.disabled || input.closest("fieldset:disabled")) return;
    input.checked = true;
    input.focus({ preventScroll: true }); // the responses stay in view while choosing
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function press(id) {
    var button = document.getElementById(id);
    if (button && !button.disabled) button.click();
  }

  function submitJudgment() {
    var form = document.getElementById("judgment-form");
    if (form) form.requestSubmit(); // native validation first: a missing choice is pointed out
  }

  function toggleGuidelines() {
    var details = document.getElementById("guidelines");
    if (!details) return;
    details.open = !details.open;
    if (details.open) {
      details.scrollIntoView({ block: "nearest" });
      details.querySelector("summary").focus();
    }
  }

  function openFlag() {
    var details = document.getElementById("flag-pair");
    if (!details) return;
    details.open = true;
    details.scrollIntoView({ block: "nearest" });
    details.querySelector("input[name=reason]").focus();
  }

  function openShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open) dialog.showModal();
  }

  function isTyping(element) {
    if (!element) return false;
    if (element.isContentEditable) return true;
    var tag = element.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    return tag === "INPUT" && ["radio", "checkbox", "button", "submit"].indexOf(element.type) < 0;
  }

  document.addEventListener("keydown", function (event) {
    var dialog = document.getElementById("shortcuts");
    if ((dialog && dialog.open) || event.isComposing || event.altKey) return;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitJudgment();
      return;
    }
    if (event.ctrlKey || event.metaKey || isTyping(event.target)) return;
    var key = event.key;
    if (busy) {
      if (key === "Enter" || CHOICE_KEYS[key] || STRENGTH_KEYS[key] || "sfug?".indexOf(key) >= 0) {
        event.preventDefault();
      }
      return;
    }
    if (key === "Enter") {
      // On a focused button, link or summary, or in the report form, Enter keeps its own meaning.
      if (event.target.closest && event.target.closest("button, a, summary, #flag-pair")) return;
      submitJudgment();
    } else if (CHOICE_KEYS[key]) {
      pick(CHOICE_KEYS[key]);
    } else if (STRENGTH_KEYS[key]) {
      pick(STRENGTH_KEYS[key]);
    } else if (key === "s") {
      press("skip-button");
    } else if (key === "f") {
      openFlag();
    } else if (key === "u") {
      press("undo-button");
    } else if (key === "g") {
      toggleGuidelines();
    } else if (key === "?") {
      openShortcuts();
    } else {
      return;
    }
    event.preventDefault();
  });

  document.addEventListener("change", function (event) {
    if (event.target && event.target.name === "choice") syncStrength();
  });

  /* After htmx swaps in a card: announce it, move focus to it, restart the clock. */
  function announce(text) {
    var region = document.getElementById("rate-announce");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function cardArrived() {
    busy = false;
    var card = document.getElementById("pair-card");
    if (!card) return;
    startTimingFor(card);
    syncStrength();
    announce(card.getAttribute("data-announce") || "");
    // Focus goes to the control a refused judgment is about, or else to the new pair's heading.
    var target = card.querySelector("[aria-invalid=true]") || document.getElementById("pair-card-title");
    if (target) target.focus();
  }

  function showFailure(text) {
    busy = false;
    var card = document.getElementById("pair-card");
    if (card) card.removeAttribute("aria-busy");
    var note = document.getElementById("rate-failure");
    if (!note && card) {
      note = document.createElement("p");
      note.id = "rate-failure";
      note.className = "flash error";
      note.setAttribute("role", "alert");
      card.insertBefore(note, card.firstChild);
    }
    if (note) note.textContent = text;
  }

  document.addEventListener("DOMContentLoaded", function () {
    // On a narrow screen the guidelines sit above the pair, folded to one line (g opens them).
    var details = document.getElementById("guidelines");
    if (details && window.matchMedia("(max-width: 74.99rem)").matches) details.open = false;
    var shortcutsButton = document.getElementById("shortcuts-open");
    if (shortcutsButton) {
      shortcutsButton.hidden = false;
      shortcutsButton.addEventListener("click", openShortcuts);
    }
    var card = document.getElementById("pair-card");
    startTimingFor(card);
    syncStrength();
    document.body.addEventListener("htmx:beforeRequest", function () {
      busy = true;
      var current = document.getElementById("pair-card");
      if (current) current.setAttribute("aria-busy", "true");
    });
    document.body.addEventListener("htmx:afterSettle", function (event) {
      if (event.target && event.target.id === "pair-card") cardArrived(); // the new card
    });
    document.body.addEventListener("htmx:responseError", function (event) {
      var status = event.detail && event.detail.xhr ? event.detail.xhr.status : "";
      showFailure("The server could not save this (error " + status + "). Your choice is still selected: press Enter to try again, or reload the page.");
    });
    document.body.addEventListener("htmx:sendError", function () {
      showFailure("Could not reach the server. Your choice is still selected: press Enter to try again when you are back online.");
    });
  });
})();
