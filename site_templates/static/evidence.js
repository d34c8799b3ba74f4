/* evidence: filters and CSV of the evidence table. Without this script the table's rows are shown.
   A large table is on several pages (data-pages on the form): once a filter is set, the rows of
   the other pages are fetched and filtered with this page's, so a filter searches the whole table.
   From file://, where a page may not fetch another, the filters search this page only. */
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var table = document.querySelector("table.evidence-table");
  if (!form || !table) { return; }
  form.hidden = false;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var selects = Array.prototype.slice.call(form.querySelectorAll("select[data-filter]"));
  var text = form.querySelector("[data-filter-text]");
  var count = document.getElementById("shown-count");
  var pages = (form.getAttribute("data-pages") || "").split(/\s+/).filter(Boolean);
  var here = parseInt(form.getAttribute("data-page") || "1", 10);
  var scope = document.getElementById("filter-scope");
  var others = null;  // the other pages' rows, once fetched (a promise)
  // Each row's filter values and its text, read once.
  function entry(r, other) {
    var values = {};
    selects.forEach(function (s) {
      var key = s.getAttribute("data-filter");
      values[key] = (r.getAttribute("data-" + key) || "").split("|");
    });
    return { row: r, values: values, text: visibleText(r).toLowerCase(), other: other };
  }
  // What a reader sees of a row: its text without the words kept for screen readers (".vh",
  // such as "not recorded" beside a dash), which a sighted user filtering by text cannot see.
  function visibleText(r) {
    var copy = r.cloneNode(true);
    Array.prototype.forEach.call(copy.querySelectorAll(".vh"), function (e) { e.remove(); });
    return copy.textContent;
  }
  var index = rows.map(function (r) { return entry(r, false); });

  function fetchOthers() {
    if (others) { return others; }
    var site = window.evidenceSite;  // site.js, loaded before this script (an older cached copy may lack it)
    if (!site || !site.otherRows) { return (others = Promise.reject(new Error("site.js is not loaded"))); }
    others = site.otherRows(pages, here, "table.evidence-table tbody").then(function (parts) {
      var first = body.rows[0] || null;  // read now: the rows may have been sorted meanwhile
      parts.forEach(function (part) {
        if (!part) { return; }
        part.rows.forEach(function (row) {
          row.hidden = true;
          if (part.before && first) { body.insertBefore(row, first); } else { body.appendChild(row); }
          index.push(entry(row, true));
        });
      });
    });
    return others;
  }

  function apply() {
    var wanted = selects.map(function (s) { return [s.getAttribute("data-filter"), s.value]; }).filter(function (x) { return x[1] !== ""; });
    var words = (text && text.value ? text.value.toLowerCase().split(/\s+/) : []).filter(Boolean);
    var active = wanted.length > 0 || words.length > 0;
    if (active && pages.length > 1 && !others) {
      if (location.protocol === "file:") {
        others = Promise.resolve();
        scope.hidden = false;
        scope.textContent = "Opened from a file, the filters search this page only.";
      } else {
        scope.hidden = false;
        scope.textContent = "Searching every page of the table…";
        fetchOthers().then(function () { scope.hidden = true; apply(); }, function (err) {
          scope.textContent = "The other pages could not be loaded (" + err.message + "); the filters search this page only.";
        });
      }
    }
    var shown = 0;
    index.forEach(function (item) {
      var ok = (active || !item.other) && wanted.every(function (w) { return item.values[w[0]].indexOf(w[1]) >= 0; }) &&
        words.every(function (w) { return item.text.indexOf(w) >= 0; });
      if (item.row.hidden === ok) { item.row.hidden = !ok; }
      if (ok) { shown += 1; }
    });
    count.textContent = String(shown);
    // Keep the filters in the address, so a filtered view can be shared.
    var params = new URLSearchParams();
    wanted.forEach(function (w) { params.set(w[0], w[1]); });
    if (words.length) { params.set("q", text.value); }
    var qs = params.toString();
    if (history.replaceState && location.protocol !== "file:") {
      history.replaceState(null, "", qs ? "?" + qs : location.pathname);
    }
  }
  // Filters from the address (?drug=baricitinib&response=complete).
  var start = new URLSearchParams(location.search);
  selects.forEach(function (s) {
    var v = start.get(s.getAttribute("data-filter"));
    if (v !== null && Array.prototype.some.call(s.options, function (o) { return o.value === v; })) { s.value = v; }
  });
  if (text && start.get("q")) { text.value = start.get("q"); }
  selects.forEach(function (s) { s.addEventListener("change", apply); });
  if (text) { text.addEventListener("input", apply); }
  form.addEventListener("reset", function () { setTimeout(apply, 0); });
  form.addEventListener("submit", function (e) { e.preventDefault(); apply(); });
  apply();

  function csvCell(v) {
    if (/^[=+@\t\r]/.test(v) || (/^-/.test(v) && !/^-\d/.test(v))) { v = "'" + v; }
    return /[",\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  document.getElementById("csv-filtered").addEventListener("click", function () {
    var head = Array.prototype.map.call(table.tHead.rows[0].cells, function (c) { return csvCell(c.textContent.trim()); });
    var lines = [head.join(",")];
    Array.prototype.forEach.call(body.rows, function (r) {
      if (r.hidden) { return; }
      lines.push(Array.prototype.map.call(r.cells, function (c) {
        var nr = c.querySelector(".nr"), absent = c.querySelector(".absent");
        return csvCell(absent && !nr ? "" : c.textContent.trim());
      }).join(","));
    });
    var blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv;charset=utf-8" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "evidence-filtered.csv";
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
  });
})();
