"""The dashboard page's own script and style (report/dashboard.py writes the page): the
error probe the headless-browser test reads, the table sorter, the style sheet."""

# First script on the page: keeps every console error and uncaught exception in the DOM, where
# the headless-browser test (and a curious reader with dev tools) can see them.
ERROR_PROBE = """
window.__dashboardErrors = [];
(function () {
  var original = console.error;
  console.error = function () {
    window.__dashboardErrors.push(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  window.addEventListener("error", function (e) { window.__dashboardErrors.push(String(e.message)); });
  window.addEventListener("unhandledrejection", function (e) {
    window.__dashboardErrors.push("unhandled rejection: " + String(e.reason));
  });
  window.addEventListener("load", function () {
    setTimeout(function () {
      var figures = document.querySelectorAll(".plotly-graph-div");
      var drawn = [];  // figures with an SVG and at least one drawn trace
      figures.forEach(function (f) {
        if (f.querySelector("svg.main-svg") && f.querySelector("svg.main-svg g.trace")) {
          drawn.push(f.id);
        }
      });
      document.body.setAttribute("data-figures", String(figures.length));
      document.body.setAttribute("data-figures-drawn", String(drawn.length));
      document.body.setAttribute("data-drawn-ids", drawn.join(" "));
      document.body.setAttribute("data-first-figure", figures.length ? figures[0].id : "");
      var wide = [];  // tables wider than the page: their right-hand columns would be cut off
      document.querySelectorAll("div.scroll").forEach(function (d, i) {
        if (d.scrollWidth > d.clientWidth + 1) { wide.push(d.id || String(i)); }
      });
      document.body.setAttribute("data-wide-tables", wide.join(" "));
      document.body.setAttribute("data-errors", JSON.stringify(window.__dashboardErrors));
    }, 500);
  });
})();
"""

SORTER = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = th.getAttribute("data-order") !== "asc";
    th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
    th.setAttribute("data-order", ascending ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].textContent, y = b.cells[index].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? cmp : -cmp;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1360px; color: #222; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .3rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .25rem .4rem; text-align: right; }
th { overflow-wrap: anywhere; }
th { background: #f3f3f3; cursor: pointer; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: .85rem; max-width: 60rem; }
.scroll { overflow-x: auto; }
.warning { border: 2px solid #c0392b; background: #fdecea; padding: .6rem 1rem; margin: 1rem 0; }
.warning h2 { margin-top: .2rem; border: none; color: #c0392b; }
.ok { border-left: 4px solid #27ae60; padding: .3rem .8rem; margin: 1rem 0; }
"""
