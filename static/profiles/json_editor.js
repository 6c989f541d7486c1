/*
 * Tiny JSON editor for profile admin textareas (`data-json-editor`): validates as you type, shows a red
 * message for invalid JSON and offers a "Format" button (indent 2). The server validates again; this
 * only saves a round trip. No dependencies.
 */
(function () {
  "use strict";

  function parse(text) {
    if (!text.trim()) {
      return { ok: true, value: {} };
    }
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (error) {
      return { ok: false, message: error.message };
    }
  }

  function attach(textarea) {
    if (textarea.dataset.jsonEditorReady) {
      return;
    }
    textarea.dataset.jsonEditorReady = "1";

    var bar = document.createElement("div");
    bar.className = "json-editor-bar";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button json-editor-format";
    button.textContent = "Format";
    var status = document.createElement("span");
    status.className = "json-editor-status";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    bar.appendChild(button);
    bar.appendChild(status);
    // The admin lays label and widget out in a flex row: keep the bar on its own line under the textarea.
    var wrap = document.createElement("div");
    wrap.className = "json-editor-wrap";
    textarea.parentNode.insertBefore(wrap, textarea);
    wrap.appendChild(textarea);
    wrap.appendChild(bar);

    function validate() {
      var result = parse(textarea.value);
      textarea.classList.toggle("json-editor-invalid", !result.ok);
      textarea.setAttribute("aria-invalid", result.ok ? "false" : "true");
      status.textContent = result.ok ? "" : "Invalid JSON: " + result.message;
      button.disabled = !result.ok;
      return result;
    }

    button.addEventListener("click", function () {
      var result = validate();
      if (result.ok) {
        textarea.value = JSON.stringify(result.value, null, 2);
      }
    });
    textarea.addEventListener("input", validate);
    validate();
  }

  function init() {
    document.querySelectorAll("textarea[data-json-editor]").forEach(attach);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
