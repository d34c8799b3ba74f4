/* evidence: the network view. Hover, focus or tap a node to light up its neighbours; follow it to
   its page; show or hide kinds of node. The picture itself is drawn at build time. */
(function () {
  "use strict";
  var svg = document.getElementById("graph");
  if (!svg) { return; }
  var tools = document.getElementById("graph-tools");
  var status = document.getElementById("graph-status");
  tools.hidden = false;
  var nodes = {};
  Array.prototype.forEach.call(svg.querySelectorAll(".node"), function (n) { nodes[n.id] = n; });
  var edges = Array.prototype.slice.call(svg.querySelectorAll(".edge"));
  var adj = {};
  edges.forEach(function (e) {
    var s = e.getAttribute("data-s"), t = e.getAttribute("data-t");
    (adj[s] = adj[s] || []).push([t, e]);
    (adj[t] = adj[t] || []).push([s, e]);
  });
  var current = null;
  function clear() {
    svg.classList.remove("focus");
    Array.prototype.forEach.call(svg.querySelectorAll(".hl, .sel"), function (x) { x.classList.remove("hl"); x.classList.remove("sel"); });
    current = null;
  }
  function highlight(id) {
    if (current === id) { return; }
    clear();
    current = id;
    var n = nodes[id];
    svg.classList.add("focus");
    n.classList.add("sel");
    var names = [];
    (adj[id] || []).forEach(function (pair) {
      nodes[pair[0]].classList.add("hl");
      pair[1].classList.add("hl");
      var t = nodes[pair[0]].querySelector("title");
      names.push(t ? t.textContent : pair[0]);
    });
    var title = n.querySelector("title");
    status.textContent = (title ? title.textContent : id) + ": " + names.length + " neighbour" + (names.length === 1 ? "" : "s") +
      (names.length ? " (" + names.slice(0, 8).join("; ") + (names.length > 8 ? "; …" : "") + ")" : "");
  }
  Object.keys(nodes).forEach(function (id) {
    var n = nodes[id];
    n.addEventListener("mouseenter", function () { highlight(id); });
    n.addEventListener("focus", function () { highlight(id); });
    n.addEventListener("touchstart", function () { highlight(id); }, { passive: true });
  });
  svg.addEventListener("mouseleave", clear);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") { clear(); } });
  Array.prototype.forEach.call(tools.querySelectorAll("input[data-kind]"), function (box) {
    box.addEventListener("change", function () {
      var kind = box.getAttribute("data-kind");
      var off = {};
      Array.prototype.forEach.call(tools.querySelectorAll("input[data-kind]"), function (b) { if (!b.checked) { off[b.getAttribute("data-kind")] = true; } });
      Object.keys(nodes).forEach(function (id) {
        nodes[id].classList.toggle("off", !!off[nodes[id].getAttribute("data-kind")]);
      });
      edges.forEach(function (e) {
        var s = nodes[e.getAttribute("data-s")], t = nodes[e.getAttribute("data-t")];
        e.classList.toggle("off", s.classList.contains("off") || t.classList.contains("off"));
      });
      status.textContent = (box.checked ? "Showing " : "Hiding ") + kind + " nodes.";
    });
  });
})();
