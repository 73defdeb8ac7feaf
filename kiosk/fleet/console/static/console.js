// Live refresh: an element with data-refresh="URL" data-every="SECONDS" is replaced by what the
// URL returns, every SECONDS. The page works without this script (its tables are server-made).
"use strict";
(function () {
  function refresh(box) {
    var every = Number(box.getAttribute("data-every")) * 1000;
    function tick() {
      fetch(box.getAttribute("data-refresh"), {credentials: "same-origin", cache: "no-store"})
        .then(function (r) {
          // Sent to the login page (the session ended): show it, rather than it in the table.
          if (r.redirected) { window.location.reload(); return Promise.reject("login"); }
          return r.ok ? r.text() : Promise.reject(r.status);
        })
        .then(function (html) { box.innerHTML = html; box.setAttribute("data-refreshed", Date.now()); })
        .catch(function () { /* keep the last table; try again next tick */ })
        .finally(function () { window.setTimeout(tick, every); });
    }
    window.setTimeout(tick, every);
  }
  document.querySelectorAll("[data-refresh]").forEach(refresh);
})();
