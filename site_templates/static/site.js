/* evidence: small enhancements for every page. The pages work without it. */
(function () {
  "use strict";

  // Sortable tables: a button in each column heading; aria-sort says the order. A list on several
  // pages (a data-pages container, see list.html) fetches the other pages' rows at its first sort,
  // so that the sort orders every row; opened from file://, where a page may not fetch another,
  // it sorts this page only and says so.
  function cellValue(row, i) {
    var cell = row.cells[i];
    return cell ? cell.textContent.trim() : "";
  }
  function compare(a, b) {
    var na = parseFloat(a), nb = parseFloat(b);
    if (!isNaN(na) && !isNaN(nb) && /^-?\d/.test(a) && /^-?\d/.test(b)) { return na - nb; }
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }
  // The rows of the other pages of a table on several pages (pages: their URLs, here: this page's
  // number, 1-based), fetched and parsed: a promise of [{before, rows}] in page order, null for
  // this page. Each row is imported into this document with its links made absolute (they are
  // relative to the page they came from). Used by the lists' sort and by evidence.js's filters.
  function otherRows(pages, here, selector) {
    return Promise.all(pages.map(function (u, i) {
      if (i + 1 === here) { return null; }
      var url = new URL(u, location.href);
      return fetch(url.href).then(function (r) {
        if (!r.ok) { throw new Error(url.pathname + ": " + r.status); }
        return r.text();
      }).then(function (html) {
        var b = new DOMParser().parseFromString(html, "text/html").querySelector(selector);
        var rows = b ? Array.prototype.map.call(b.rows, function (r) {
          var row = document.importNode(r, true);
          Array.prototype.forEach.call(row.querySelectorAll("a[href]"), function (a) { a.href = new URL(a.getAttribute("href"), url).href; });
          return row;
        }) : [];
        return { before: i + 1 < here, rows: rows };
      });
    }));
  }
  window.evidenceSite = { otherRows: otherRows };

  function otherPages(table) {
    var box = table.closest("[data-pages]");
    var pages = box ? (box.getAttribute("data-pages") || "").split(/\s+/).filter(Boolean) : [];
    if (pages.length < 2) { return null; }
    var here = parseInt(box.getAttribute("data-page") || "1", 10);
    var status = box.querySelector(".sort-scope");
    var body = table.tBodies[0];
    function say(text) { if (status) { status.hidden = false; status.textContent = text; } }
    if (location.protocol === "file:") {
      say("Opened from a file, sorting orders the rows of this page only.");
      return Promise.resolve();
    }
    say("Loading every page of the list…");
    return otherRows(pages, here, "[data-pages] table tbody").then(function (parts) {
      var first = body.rows[0] || null;
      parts.forEach(function (part) {
        if (!part) { return; }
        part.rows.forEach(function (row) {
          if (part.before && first) { body.insertBefore(row, first); } else { body.appendChild(row); }
        });
      });
      Array.prototype.forEach.call(box.querySelectorAll("nav.pager"), function (n) { n.hidden = true; });
      say("Every page of the list is shown here: " + body.rows.length + " rows.");
    }, function (err) {
      say("The other pages could not be loaded (" + err.message + "); sorting orders the rows of this page only.");
    });
  }
  function makeSortable(table) {
    var head = table.tHead;
    if (!head || !table.tBodies.length) { return; }
    var ths = head.rows[0].cells;
    var loaded = null;  // true once every row is here (or for a one-page table); a promise while the other pages load
    Array.prototype.forEach.call(ths, function (th, i) {
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "sort-btn";
      while (th.firstChild) { btn.appendChild(th.firstChild); }
      th.appendChild(btn);
      btn.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(ths, function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        function sortNow() {
          if (th.getAttribute("aria-sort") !== (asc ? "ascending" : "descending")) { return; }  // clicked again meanwhile
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          var keyed = rows.map(function (r, j) { return [cellValue(r, i), j, r]; });
          keyed.sort(function (x, y) { return (asc ? compare(x[0], y[0]) : compare(y[0], x[0])) || x[1] - y[1]; });
          var frag = document.createDocumentFragment();
          keyed.forEach(function (k) { frag.appendChild(k[2]); });
          body.appendChild(frag);
          table.setAttribute("data-sorted", "");
        }
        if (loaded === null) {
          loaded = otherPages(table) || true;
          if (loaded !== true) { loaded.then(function () { loaded = true; }); }
        }
        if (loaded === true) { sortNow(); } else { loaded.then(sortNow); }
      });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);

  // Copy buttons: copy the text of the element named by data-copy.
  Array.prototype.forEach.call(document.querySelectorAll("button.copy[data-copy]"), function (btn) {
    var target = document.getElementById(btn.getAttribute("data-copy"));
    if (!target) { return; }
    btn.hidden = false;
    var label = btn.textContent;
    btn.addEventListener("click", function () {
      var text = target.textContent;
      function done(ok) {
        btn.textContent = ok ? "Copied" : "Select the text and copy it";
        setTimeout(function () { btn.textContent = label; }, 2000);
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallback(target)); });
      } else {
        done(fallback(target));
      }
    });
  });
  function fallback(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }

  // Print every collapsed section.
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details:not([open])"), function (d) {
      d.setAttribute("open", "");
      d.setAttribute("data-print-opened", "");
    });
  });
  window.addEventListener("afterprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details[data-print-opened]"), function (d) {
      d.removeAttribute("open");
      d.removeAttribute("data-print-opened");
    });
  });
})();
