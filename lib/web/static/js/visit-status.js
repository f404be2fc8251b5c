// Live status of a video visit: polls the page's JSON (data-status-url) every 3 seconds and redraws the
// participants table from it. No inline script (CSP); text is set with textContent only.
(function () {
  "use strict";
  var table = document.getElementById("participants");
  if (!table) { return; }
  var url = table.getAttribute("data-status-url");
  var body = table.querySelector("tbody");
  var callState = document.getElementById("call-state");
  var updated = document.getElementById("updated");

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function timeCell(iso) {
    var td = document.createElement("td");
    var time = document.createElement("time");
    time.setAttribute("datetime", iso);
    time.textContent = new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    td.appendChild(time);
    return td;
  }

  function draw(status) {
    var rows = [];
    status.participants.forEach(function (p) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-state", p.state);
      tr.appendChild(cell(p.label));
      tr.appendChild(cell(p.stateLabel));
      tr.appendChild(timeCell(p.sinceUtc));
      rows.push(tr);
    });
    if (!rows.length) {
      var empty = document.createElement("tr");
      var td = cell("Nobody has joined the meeting yet.");
      td.setAttribute("colspan", "3");
      empty.appendChild(td);
      rows.push(empty);
    }
    body.replaceChildren.apply(body, rows);
    callState.textContent = status.callStateLabel;
  }

  function poll() {
    fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store", credentials: "same-origin"})
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (status) {
        draw(status);
        updated.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function () {
        updated.textContent = "Could not update; trying again.";
      })
      .finally(function () { window.setTimeout(poll, 3000); });
  }

  window.setTimeout(poll, 3000);
}());
