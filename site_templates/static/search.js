/* evidence: the search page. Over http(s) it queries Pagefind's index, written at build time as
   one or more bundles (pagefind/, pagefind-N/, listed in the form's data-bundles) that it merges;
   from file://, where a browser may not load that index, it searches the pages' titles
   (search-titles.js). Results are built as DOM nodes, never as HTML strings.

   An index of several bundles has a words bundle too (data-words, see site_search.words_pages).
   Pagefind matches a term by the words that begin with it or, in a bundle that has none, by the
   longest word that begins the term, so a bundle without the word would answer with pages that
   do not hold it. Each bundle is merged with its name as the filter "bundle"; the words bundle is
   searched first, and its answer (pages that its bundles.json maps to bundles) names the bundles
   whose words a one-bundle index would match: the search proper keeps the pages of those only. */
(function () {
  "use strict";
  var form = document.getElementById("search-form");
  var input = document.getElementById("q");
  var list = document.getElementById("search-results");
  var status = document.getElementById("search-status");
  var mode = document.getElementById("search-mode");
  if (!form || !input) { return; }
  var siteRoot = new URL(".", location.href);
  var offline = location.protocol === "file:";
  var pagefind = null;
  var names = (form.getAttribute("data-bundles") || "pagefind").split(/\s+/).filter(Boolean);
  var words = form.getAttribute("data-words");  // the words bundle, with more than one bundle
  var wordsMap = null;  // Pagefind's id of each page of the words bundle -> the bundle it stands for
  var seq = 0;

  function say(text) { status.textContent = text; }
  function item(url, title, kind, excerptNodes) {
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.href = url;
    a.textContent = title;
    li.appendChild(a);
    if (kind) {
      var k = document.createElement("span");
      k.className = "small muted";
      k.textContent = " " + kind;
      li.appendChild(k);
    }
    if (excerptNodes && excerptNodes.length) {
      var p = document.createElement("p");
      p.className = "excerpt";
      excerptNodes.forEach(function (n) { p.appendChild(n); });
      li.appendChild(p);
    }
    return li;
  }
  // Pagefind's excerpt is text with <mark> around the hits: keep only the text and the marks.
  function excerpt(html) {
    var doc = new DOMParser().parseFromString("<p>" + html + "</p>", "text/html");
    var out = [];
    Array.prototype.forEach.call(doc.body.firstChild ? doc.body.firstChild.childNodes : [], function (n) {
      if (n.nodeType === 3) { out.push(document.createTextNode(n.textContent)); }
      else if (n.nodeName === "MARK") { var m = document.createElement("mark"); m.textContent = n.textContent; out.push(m); }
      else { out.push(document.createTextNode(n.textContent)); }
    });
    return out;
  }
  function show(results, total) {
    list.textContent = "";
    results.forEach(function (r) { list.appendChild(r); });
    say(total === 0 ? "No results." : total + " result" + (total === 1 ? "" : "s") + (total > results.length ? ", the first " + results.length + " shown." : "."));
  }

  function titleMatches(q, titles) {
    var words = q.toLowerCase().split(/\s+/).filter(Boolean);
    return titles.filter(function (e) {
      var hay = (e[0] + " " + e[1]).toLowerCase();
      return words.every(function (w) { return hay.indexOf(w) >= 0; });
    });
  }
  function searchTitles(q) {
    var found = titleMatches(q, window.EVIDENCE_TITLES || []);
    show(found.slice(0, 100).map(function (e) { return item(new URL(e[2], siteRoot).href, e[0], e[1]); }), found.length);
  }
  // The titles, loaded once, when a search needs them over http too (see searchPagefind).
  var titlesLoaded = null;
  function loadTitles() {
    if (window.EVIDENCE_TITLES) { return Promise.resolve(window.EVIDENCE_TITLES); }
    if (!titlesLoaded) {
      titlesLoaded = new Promise(function (resolve) {
        var s = document.createElement("script");
        s.src = new URL("search-titles.js", siteRoot).href;
        s.onload = function () { resolve(window.EVIDENCE_TITLES || []); };
        s.onerror = function () { resolve([]); };
        document.body.appendChild(s);
      });
    }
    return titlesLoaded;
  }
  // A notation with punctuation inside a word (c.52G>A, NM_033629.6, p.(Asp18Asn), a DOI) is cut
  // into pieces by Pagefind, which then matched pages holding a lone "c" and missed the variant's
  // own page: the pages whose titles hold it as written come first.
  var NOTATION = /[^\s.>:_\/()\[\]-][.>:_\/()\[\]-]+[^\s.>:_\/()\[\]-]/;

  // The results, best first. A quoted search matches whole words only (Pagefind's exact search),
  // never a shorter word: it looks in every bundle.
  function searchBundles(q) {
    if (!words) { return pagefind.search(q); }
    var bundles = Promise.resolve(names);
    if (wordsMap && !/^\s*".+"\s*$/.test(q)) {
      bundles = pagefind.search(q, { filters: { bundle: words } }).then(function (res) {
        var holding = {};
        res.results.forEach(function (r) { holding[wordsMap[r.id]] = true; });
        return names.filter(function (n) { return holding[n]; });
      });
    }
    return bundles.then(function (wanted) {
      return wanted.length ? pagefind.search(q, { filters: { bundle: { any: wanted } } }) : { results: [] };
    });
  }

  function searchPagefind(q) {
    var mine = ++seq;
    say("Searching…");
    var titled = NOTATION.test(q) ? loadTitles().then(function (t) { return titleMatches(q, t); }) : Promise.resolve([]);
    Promise.all([searchBundles(q), titled]).then(function (both) {
      var res = both[0], first = both[1];
      if (mine !== seq) { return null; }
      var seen = {};
      var top = first.slice(0, 30).map(function (e) {
        var url = new URL(e[2], siteRoot).href;
        seen[url] = true;
        return item(url, e[0], e[1]);
      });
      return Promise.all(res.results.slice(0, 30).map(function (r) { return r.data(); })).then(function (data) {
        if (mine !== seq) { return; }
        var rest = data.filter(function (d) { return !seen[new URL(d.url, location.href).href]; });
        show(top.concat(rest.map(function (d) {
          var url = new URL(d.url, location.href).href;
          return item(url, (d.meta && d.meta.title) || d.url, d.meta && d.meta.kind, excerpt(d.excerpt || ""));
        })), first.length + res.results.length - (data.length - rest.length));
      });
    }).catch(function (err) { if (mine === seq) { say("Search failed: " + err); } });
  }

  function run() {
    var q = input.value.trim();
    if (!q) { list.textContent = ""; say(""); return; }
    if (pagefind) { searchPagefind(q); } else { searchTitles(q); }
    if (history.replaceState && !offline) { history.replaceState(null, "", "?q=" + encodeURIComponent(q)); }
  }
  function ready() {
    form.addEventListener("submit", function (e) { e.preventDefault(); run(); });
    var timer = null;
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 200); });
    var q = new URLSearchParams(location.search).get("q");
    if (q) { input.value = q; run(); }
  }
  function useTitles(why) {
    mode.hidden = false;
    mode.textContent = why + " Searching the titles of the pages instead of the full text.";
    var s = document.createElement("script");
    s.src = new URL("search-titles.js", siteRoot).href;
    s.onload = ready;
    s.onerror = function () { say("The search index could not be loaded."); };
    document.body.appendChild(s);
  }
  if (offline) {
    useTitles("Opened from a file, the full-text index cannot be loaded.");
  } else {
    var opts = function (name) {
      var o = { baseUrl: siteRoot.pathname, excerptLength: 24 };
      if (words) { o.mergeFilter = { bundle: name }; }
      return o;
    };
    var merged = names.slice(1).concat(words ? [words] : []);
    import(new URL(names[0] + "/pagefind.js", siteRoot).href).then(function (pf) {
      return pf.options(opts(names[0])).then(function () { return pf.init ? pf.init() : null; }).then(function () {
        return Promise.all(merged.map(function (b) { return pf.mergeIndex(new URL(b + "/", siteRoot).href, opts(b)); }));
      }).then(function () {
        if (!words) { return null; }
        // Without it, every bundle is searched: a rare word may then find pages without it.
        return fetch(new URL(words + "/bundles.json", siteRoot).href).then(function (r) {
          if (!r.ok) { throw new Error("bundles.json: " + r.status); }
          return r.json();
        }).then(function (map) { wordsMap = map; }, function () { wordsMap = null; });
      }).then(function () { pagefind = pf; });
    }).then(ready, function () { useTitles("The full-text index is not available."); });
  }
})();
