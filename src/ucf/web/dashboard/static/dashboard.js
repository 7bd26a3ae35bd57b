// ucf dashboard: small progressive enhancements. Every page works without this file;
// only auto-refresh, copy buttons and instant catalogue filtering need it.
(function () {
  "use strict";

  // ---------------------------------------------------------------- auto-refresh
  // A region with data-refresh="N" is re-read from the same URL every N seconds and
  // swapped in place. Skipped while the tab is hidden, while focus or an open
  // <details> is inside the region (so nothing moves under the user), or when its
  // toggle (data-refresh-toggle) is off.
  var STORAGE_KEY = "ucf.autorefresh.";
  // The path prefix ucf is served under behind a proxy ("" at a host's root).
  var ROOT = document.documentElement.getAttribute("data-root") || "";

  function toggleFor(region) {
    return document.querySelector('[data-refresh-toggle="' + region.id + '"]');
  }

  function paused(region) {
    if (document.hidden) return true;
    if (region.contains(document.activeElement) && document.activeElement !== document.body) return true;
    if (region.querySelector("details[open]")) return true;
    var toggle = toggleFor(region);
    return toggle !== null && !toggle.checked;
  }

  function refresh(region) {
    if (paused(region)) return;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", redirect: "follow" })
      .then(function (response) {
        if (!response.ok || new URL(response.url).pathname === ROOT + "/login") throw new Error("stop");
        return response.text();
      })
      .then(function (html) {
        if (paused(region)) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        if (fresh === null) return;
        region.innerHTML = fresh.innerHTML;
        enhance(region);
      })
      .catch(function () { /* the next tick tries again; a logged-out page stays as it is */ });
  }

  function startRefresh() {
    document.querySelectorAll("[data-refresh]").forEach(function (region) {
      var seconds = parseInt(region.getAttribute("data-refresh"), 10);
      if (!region.id || !(seconds >= 2)) return;
      var toggle = toggleFor(region);
      if (toggle !== null) {
        var label = toggle.closest("label");
        if (label) label.hidden = false;
        var stored = window.localStorage ? localStorage.getItem(STORAGE_KEY + region.id) : null;
        if (stored !== null) toggle.checked = stored === "1";
        toggle.addEventListener("change", function () {
          if (window.localStorage) localStorage.setItem(STORAGE_KEY + region.id, toggle.checked ? "1" : "0");
          if (toggle.checked) refresh(region);
        });
      }
      window.setInterval(function () { refresh(region); }, seconds * 1000);
    });
  }

  // ---------------------------------------------------------------- copy buttons
  function enhance(root) {
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (!navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (source === null) return;
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          var label = button.innerHTML;
          button.textContent = "Copied";
          window.setTimeout(function () { button.innerHTML = label; }, 1500);
        });
      });
    });
  }

  // ---------------------------------------------------------------- busy buttons
  // Test connection and Poll now take a moment: say so, and prevent a double submit.
  document.addEventListener("submit", function (event) {
    var button = event.submitter || event.target.querySelector("button[type=submit]");
    if (!button || !button.hasAttribute("data-busy")) return;
    if (button.getAttribute("aria-busy") === "true") { event.preventDefault(); return; }
    window.setTimeout(function () {
      button.setAttribute("aria-busy", "true");
      button.textContent = button.getAttribute("data-busy");
    }, 0);
  });

  // ---------------------------------------------------------------- catalogue filter
  // Filters the cards as you type; the form still searches on the server when sent.
  function startFilter() {
    var input = document.querySelector("[data-filter-cards]");
    if (input === null) return;
    var grid = document.getElementById(input.getAttribute("data-filter-cards"));
    var empty = document.getElementById("connector-empty");
    var count = document.getElementById("connector-count");
    if (grid === null) return;
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      var shown = 0;
      grid.querySelectorAll("[data-search]").forEach(function (card) {
        var match = needle === "" || card.getAttribute("data-search").indexOf(needle) !== -1;
        card.hidden = !match;
        if (match) shown += 1;
      });
      if (empty) empty.hidden = shown !== 0;
      if (count) count.textContent = shown + (shown === 1 ? " connector" : " connectors") + (needle ? " matching “" + input.value.trim() + "”" : "");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
    startRefresh();
    startFilter();
  });
})();
