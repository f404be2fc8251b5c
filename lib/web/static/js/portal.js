// Configuration portal: optional conveniences. Every page works without this script.
(function () {
  "use strict";

  // Live preview of SMS templates: as the admin types a text (or the help contact, which the answer to HELP
  // shows), ask the server for the text and its segments.
  var form = document.getElementById("sms-form");
  if (form) {
    var url = form.getAttribute("data-preview-url");
    var environment = form.getAttribute("data-environment");
    var contact = document.getElementById("help_contact");
    var timers = {};
    var refresh = function (block) {
      var area = block.querySelector("textarea");
      var preview = block.querySelector(".preview");
      clearTimeout(timers[area.id]);
      timers[area.id] = setTimeout(function () {
        fetch(url, {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json"},
          body: JSON.stringify({environmentId: environment, kind: block.getAttribute("data-kind"),
                                language: block.getAttribute("data-language"), template: area.value,
                                helpContact: contact ? contact.value : null})
        }).then(function (r) {
          return r.json().then(function (body) {
            if (r.ok) { return body; }
            // A refused preview (422 and the like): its messages replace the text, never "0 segment(s)".
            var messages = (body.errors || []).map(function (e) { return e.message; });
            return {refused: true, problems: messages.length ? messages : [body.detail || "No preview."]};
          });
        }).then(function (result) {
          preview.querySelector(".preview-text").textContent = result.text || "";
          preview.querySelector(".preview-segments").textContent = String(result.segments || 0);
          preview.querySelector(".preview-encoding").textContent = result.encoding || "";
          preview.querySelector(".preview-count").hidden = Boolean(result.refused);
          var old = preview.querySelector(".field-error");
          if (old) { old.remove(); }
          if (result.problems && result.problems.length) {
            var strong = document.createElement("strong");
            strong.className = "field-error";
            strong.textContent = " " + result.problems.join("; ");
            preview.lastElementChild.appendChild(strong);
          }
        }).catch(function () {});
      }, 300);
    };
    var blocks = form.querySelectorAll(".template");
    Array.prototype.forEach.call(blocks, function (block) {
      block.querySelector("textarea").addEventListener("input", function () { refresh(block); });
    });
    if (contact) {
      contact.addEventListener("input", function () {
        Array.prototype.forEach.call(blocks, function (block) {
          if (block.getAttribute("data-kind") === "help") { refresh(block); }
        });
      });
    }
  }

  // Phone-number purchase: poll its progress and reload when it ends.
  var purchase = document.getElementById("purchase");
  if (purchase && purchase.getAttribute("data-status") === "running") {
    var progressUrl = purchase.getAttribute("data-progress-url");
    var poll = function () {
      fetch(progressUrl, {credentials: "same-origin"}).then(function (r) { return r.json(); })
        .then(function (result) {
          if (result.status === "running") { setTimeout(poll, 1500); } else { window.location.reload(); }
        }).catch(function () { setTimeout(poll, 3000); });
    };
    setTimeout(poll, 1000);
  }
}());
