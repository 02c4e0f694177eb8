/* The token page: Copy buttons for a new token and its curl example. A button names what it
 * copies (data-copy="<element id>"). navigator.clipboard needs a secure context (HTTPS or
 * localhost); where it is missing or refused, the text is selected so the person can press
 * Ctrl+C / Cmd+C. No inline script: the site's CSP forbids it. */
(function () {
  "use strict";

  var status = document.querySelector("[data-copy-status]");

  function say(text) {
    if (status) { status.textContent = text; }
  }

  function textOf(element) {
    return element.value !== undefined ? element.value : element.textContent;
  }

  function select(element) {
    element.focus();
    if (element.select) {
      element.select();
      return;
    }
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function fallback(element) {
    select(element);
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    say(copied ? "Copied." : "Selected: press Ctrl+C (⌘C on a Mac) to copy.");
  }

  function copy(button) {
    var element = document.getElementById(button.getAttribute("data-copy"));
    if (!element) { return; }
    var text = textOf(element);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say("Copied."); button.textContent = "Copied"; },
        function () { fallback(element); }
      );
    } else {
      fallback(element);
    }
  }

  var buttons = document.querySelectorAll("[data-copy]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (event) { copy(event.currentTarget); });
  }
}());
