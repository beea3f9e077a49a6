// A live gathering's page (bot/console/templates/gathering.html): every few seconds, fetch
// its status again and put it in place. Without this script the page is the same, with
// its Refresh link. Only the server's own escaped HTML is put in. A screen reader hears
// the counts when they change (#live-said), not the whole table at every refresh.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var said = document.getElementById("live-said");
  if (!live || !live.dataset.src || !window.fetch) {
    return;
  }
  function counts() {
    var found = live.querySelector(".counts");
    return found ? found.textContent.replace(/\s+/g, " ").trim() : "";
  }
  var every = 1000 * (parseInt(live.dataset.every, 10) || 5);
  var last = null;
  var heard = counts();
  var timer = window.setInterval(function () {
    window.fetch(live.dataset.src, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html === null || html === last) {
          return;
        }
        last = html;
        live.innerHTML = html;
        var now = counts();
        if (said && now !== heard) {
          said.textContent = now;
          heard = now;
        }
        if (live.querySelector("[data-closed]")) {
          window.clearInterval(timer); // closed: nothing more will change
        }
      })
      .catch(function () { /* offline for a moment: try again at the next tick */ });
  }, every);
})();
