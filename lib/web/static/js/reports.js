// The reports page: reads the JSON API (/api/reports/visits and /api/reports/texts) with the page's filters and
// draws figures, bar charts (SVG) and tables. Only textContent and SVG attributes are set: no HTML from data, no
// inline style (the page's CSP allows neither).
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var root = document.getElementById("report");
  if (!root) { return; }
  var query = root.getAttribute("data-api-query") || "";
  var status = document.getElementById("report-status");
  var PAGE = 200;
  var visitOffset = 0;

  var OUTCOMES = {
    completed: "Completed", patient_never_joined: "Patient never joined", clinician_never_joined: "Clinician never joined",
    never_together: "Never together", nobody_joined: "Nobody joined", no_show: "No-show (Epic)", cancelled: "Cancelled",
    scheduled: "Not over yet"
  };
  var STATES = {
    queued: "Queued", sent: "Sent", delivered: "Delivered", failed: "Failed", blocked: "Blocked", opted_out: "Opted out",
    skipped: "Not sent", unknown: "Under review"
  };

  function el(name, text) { var node = document.createElement(name); if (text !== undefined) { node.textContent = text; } return node; }
  function percent(value) { return value === null || value === undefined ? "–" : (Math.round(value * 1000) / 10) + " %"; }
  function minutes(seconds) {
    if (seconds === null || seconds === undefined) { return "–"; }
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + " min " + (s < 10 ? "0" : "") + s + " s";
  }
  function dash(value) { return value === null || value === undefined || value === "" ? "–" : String(value); }
  function yesNo(value) { return value === true ? "Yes" : value === false ? "No" : "–"; }

  function getJson(path) {
    return fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error((body && body.detail) || ("The report API answered " + response.status)); }
        return body;
      });
    });
  }

  function figures(id, items) {
    var list = document.getElementById(id);
    list.textContent = "";
    items.forEach(function (item) {
      var box = el("div"); box.setAttribute("data-figure", item[0]);
      box.appendChild(el("dt", item[1])); box.appendChild(el("dd", item[2]));
      list.appendChild(box);
    });
  }

  // One bar chart: labels on the x axis, values scaled to the largest (or to 1 for rates).
  function barChart(figureId, points, options) {
    var figure = document.getElementById(figureId);
    var old = figure.querySelector("svg, p.chart-empty");
    if (old) { figure.removeChild(old); }
    var values = points.map(function (p) { return p.value; });
    var present = values.filter(function (v) { return v !== null && v !== undefined; });
    if (!present.length) { figure.appendChild(el("p", "No data in this range.")).className = "chart-empty"; return; }
    var width = 520, height = 220, left = 40, bottom = 46, top = 16;
    var max = options.rate ? 1 : Math.max.apply(null, present.concat([1]));
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    var summary = points.map(function (p) { return p.label + ": " + (options.rate ? percent(p.value) : dash(p.value)); });
    svg.setAttribute("aria-label", figure.querySelector("figcaption").textContent + ". " + summary.join("; "));
    var axis = document.createElementNS(SVG, "line");
    axis.setAttribute("x1", left); axis.setAttribute("x2", width); axis.setAttribute("y1", height - bottom);
    axis.setAttribute("y2", height - bottom); axis.setAttribute("class", "chart-axis");
    svg.appendChild(axis);
    var top_label = document.createElementNS(SVG, "text");
    top_label.setAttribute("x", 0); top_label.setAttribute("y", top); top_label.setAttribute("class", "chart-label");
    top_label.textContent = options.rate ? "100 %" : String(max);
    svg.appendChild(top_label);
    var slot = (width - left) / points.length;
    var step = Math.max(1, Math.ceil(points.length / 12));
    points.forEach(function (point, index) {
      var value = point.value || 0;
      var barHeight = (height - bottom - top) * (value / max);
      var rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", left + index * slot + slot * 0.15);
      rect.setAttribute("width", Math.max(1, slot * 0.7));
      rect.setAttribute("y", height - bottom - barHeight);
      rect.setAttribute("height", barHeight);
      rect.setAttribute("class", "chart-bar");
      rect.setAttribute("data-value", point.value === null || point.value === undefined ? "" : String(point.value));
      var title = document.createElementNS(SVG, "title");
      title.textContent = point.label + ": " + (options.rate ? percent(point.value) : dash(point.value));
      rect.appendChild(title);
      svg.appendChild(rect);
      if (index % step === 0) {
        var label = document.createElementNS(SVG, "text");
        label.setAttribute("x", left + index * slot + slot / 2);
        label.setAttribute("y", height - bottom + 16);
        label.setAttribute("text-anchor", "middle");
        label.setAttribute("class", "chart-label");
        label.textContent = options.short ? options.short(point.label) : point.label;
        svg.appendChild(label);
      }
    });
    figure.appendChild(svg);
  }

  function shortDay(day) { return day.slice(5); }

  // A table row; each cell carries its column's header as data-label (the phone layout shows it in the card).
  function row(table, cells) {
    var tr = el("tr");
    var heads = table.querySelectorAll("thead th");
    cells.forEach(function (cell, i) {
      var td = el("td", cell);
      if (heads[i]) { td.setAttribute("data-label", heads[i].textContent); }
      tr.appendChild(td);
    });
    table.querySelector("tbody").appendChild(tr);
  }

  function showVisits(body, append) {
    var s = body.summary, v = s.visits;
    if (!append) {
      figures("visit-figures", [
        ["visits", "Visits", String(v.total)],
        ["completed", "Completed", String(v.by_outcome.completed || 0)],
        ["no-show-rate", "No-show rate", percent(v.no_show_rate)],
        ["average-lobby-wait", "Average lobby wait", minutes(v.average_lobby_wait_seconds)],
        ["average-duration", "Average duration", minutes(v.average_duration_seconds)],
        ["poor-call-share", "Poor calls", percent(v.poor_call_share)],
        ["over-allocation", "Over the monthly allocation", String(v.over_allocation)]
      ]);
      barChart("chart-visits", s.per_day.map(function (d) { return { label: d.day, value: d.visits }; }), { short: shortDay });
      barChart("chart-noshow", s.per_day.map(function (d) { return { label: d.day, value: d.no_show_rate }; }), { rate: true, short: shortDay });
      barChart("chart-lobby", v.lobby_wait_distribution.map(function (b) { return { label: b.bucket, value: b.visits }; }),
        { short: function (label) { return label.replace(" min", "").replace(" or more", "+"); } });
      barChart("chart-poor", s.per_day.map(function (d) { return { label: d.day, value: d.poor_call_share }; }), { rate: true, short: shortDay });
      document.querySelector("#visits-table tbody").textContent = "";
    }
    var table = document.getElementById("visits-table");
    body.rows.forEach(function (r) {
      row(table, [r.day, r.appointment_id, dash(r.department), r.start_local ? r.start_local.replace("T", " ").slice(0, 16) : "–",
        minutes(r.duration_seconds), minutes(r.lobby_wait_seconds), OUTCOMES[r.outcome] || r.outcome,
        (r.clinicians || []).map(function (id) { return r.clinician_names && r.clinician_names[id] ? r.clinician_names[id] + " (" + id + ")" : id; }).join(", ") || "–",
        dash(r.peak_participants), r.texts_sent + " / " + r.texts_delivered, yesNo(r.quality && r.quality.poor),
        yesNo(r.within_allocation)]);
    });
    visitOffset = body.offset + body.rows.length;
    document.getElementById("visits-caption").textContent = "Visits " + (visitOffset ? "1–" + visitOffset : "0") + " of " + body.total;
    document.getElementById("visits-more").hidden = visitOffset >= body.total;
    document.getElementById("visits-section").hidden = false;
  }

  function showTexts(body) {
    var t = body.summary;
    figures("text-figures", [
      ["texts", "Texts", String(t.total)],
      ["sent", "Sent", String(t.sent)],
      ["delivered", "Delivered", String(t.delivered)],
      ["delivery-rate", "Delivery rate", percent(t.delivery_rate)],
      ["failed", "Failed", String(t.failed)],
      ["opted-out", "Opted out", String(t.opted_out)],
      ["quiet-hours", "Moved by quiet hours", String(t.quiet_hours_moved)]
    ]);
    barChart("chart-delivery", body.per_day.map(function (d) { return { label: d.day, value: d.delivery_rate }; }), { rate: true, short: shortDay });
    var failures = document.getElementById("failures-table");
    failures.querySelector("tbody").textContent = "";
    Object.keys(t.failures_by_reason).forEach(function (reason) { row(failures, [reason, String(t.failures_by_reason[reason])]); });
    if (!Object.keys(t.failures_by_reason).length) { row(failures, ["No failure in this range", "0"]); }
    var table = document.getElementById("texts-table");
    table.querySelector("tbody").textContent = "";
    body.rows.forEach(function (r) {
      row(table, [r.day, r.appointment_id, r.kind, dash(r.language), dash(r.segments), STATES[r.state] || r.state,
        dash(r.reason) + (r.quiet_hours_moved ? " (moved by quiet hours)" : ""), dash(r.recipient),
        r.sent_utc ? r.sent_utc.slice(0, 16).replace("T", " ") : "–", r.delivery_utc ? r.delivery_utc.slice(0, 16).replace("T", " ") : "–"]);
    });
    document.getElementById("texts-caption").textContent = "Texts 1–" + body.rows.length + " of " + body.total + " (all in the CSV)";
    document.getElementById("texts-section").hidden = false;
  }

  function load() {
    var sep = query ? "&" : "";
    Promise.all([
      getJson("/api/reports/visits?" + query + sep + "limit=" + PAGE),
      getJson("/api/reports/texts?" + query + sep + "limit=" + PAGE)
    ]).then(function (bodies) {
      showVisits(bodies[0], false);
      showTexts(bodies[1]);
      status.textContent = "Report for " + bodies[0].query.from + " to " + bodies[0].query.to + ": " +
        bodies[0].total + " visits, " + bodies[1].total + " texts.";
      root.setAttribute("data-loaded", "true");
    }).catch(function (error) {
      status.textContent = "The report could not be loaded: " + error.message;
      root.setAttribute("data-loaded", "error");
    });
  }

  document.getElementById("visits-more").addEventListener("click", function () {
    var sep = query ? "&" : "";
    getJson("/api/reports/visits?" + query + sep + "limit=" + PAGE + "&offset=" + visitOffset).then(function (body) {
      showVisits(body, true);
    }).catch(function (error) { status.textContent = "More visits could not be loaded: " + error.message; });
  });

  load();
}());
