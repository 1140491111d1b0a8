// The console's script: the search page's histogram (drag across bars to narrow the range)
// and the live tail's page.
(function () {
  "use strict";
  var svg = document.getElementById("histogram");
  if (!svg) return;
  var bars = svg.querySelectorAll("rect.hbar");
  var start = null;
  function barAt(e) {
    var box = svg.getBoundingClientRect();
    var i = Math.floor((e.clientX - box.left) / box.width * bars.length);
    return Math.max(0, Math.min(bars.length - 1, i));
  }
  svg.addEventListener("mousedown", function (e) { start = barAt(e); e.preventDefault(); });
  svg.addEventListener("mouseup", function (e) {
    if (start === null || bars.length === 0) return;
    var end = barAt(e);
    var first = Math.min(start, end), last = Math.max(start, end);
    start = null;
    if (first === last) return; // a click: the bar's own link narrows to it
    window.location.href = svg.dataset.base + encodeURIComponent(bars[first].dataset.from) +
      "&until=" + encodeURIComponent(bars[last].dataset.until);
  });
})();

// The live tail's page: rows arrive as Server-Sent Events (already escaped HTML rows made by
// the monitor); Pause holds them (up to MAX_HELD, then counts them as skipped) until Resume.
(function () {
  "use strict";
  var table = document.getElementById("tail");
  if (!table) return;
  var rows = document.getElementById("rows");
  var skippedEl = document.getElementById("skipped");
  var shownEl = document.getElementById("shown");
  var stateEl = document.getElementById("state");
  var button = document.getElementById("pause");
  var MAX_ROWS = 500, MAX_HELD = 1000;
  var paused = false, held = [], serverSkipped = 0, pageSkipped = 0, shown = 0;

  function count() {
    skippedEl.textContent = String(serverSkipped + pageSkipped);
    shownEl.textContent = String(shown);
  }
  function show(html) {
    rows.insertAdjacentHTML("afterbegin", html);
    shown += 1;
    while (rows.rows.length > MAX_ROWS) rows.deleteRow(-1);
    count();
  }
  var source = new EventSource(table.dataset.src);
  source.onopen = function () { stateEl.textContent = paused ? "paused" : "live"; };
  source.onerror = function () { stateEl.textContent = "reconnecting"; };
  source.addEventListener("row", function (e) {
    if (!paused) { show(e.data); return; }
    if (held.length < MAX_HELD) held.push(e.data); else { pageSkipped += 1; count(); }
  });
  source.addEventListener("skipped", function (e) {
    serverSkipped = parseInt(e.data, 10) || 0;
    count();
  });
  source.addEventListener("failed", function (e) {
    stateEl.textContent = "stopped: " + e.data;
    stateEl.className = "error";
    source.close();
  });
  button.addEventListener("click", function () {
    paused = !paused;
    button.textContent = paused ? "Resume" : "Pause";
    stateEl.textContent = paused ? "paused" : "live";
    if (!paused) { held.forEach(show); held = []; }
  });
})();
