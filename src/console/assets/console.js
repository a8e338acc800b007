// Live updates of a running instance, and "select all" of the dead tasks. No inline script:
// the console's content security policy allows scripts from itself only.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (live && live.dataset.running === "1") {
    let failures = 0;
    const tick = async function () {
      try {
        const response = await fetch(live.dataset.src, {
          credentials: "same-origin",
          cache: "no-store",
        });
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        live.innerHTML = await response.text();
        failures = 0;
        const inner = live.querySelector(".live");
        if (inner && inner.dataset.running !== "1") {
          // It ended: reload once, so that the actions match what it is now.
          window.location.reload();
          return;
        }
      } catch (e) {
        failures += 1;
      }
      window.setTimeout(tick, failures > 0 ? Math.min(30000, 1000 * 2 ** failures) : 1000);
    };
    window.setTimeout(tick, 1000);
  }

  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      for (const box of document.querySelectorAll('input[name="sel"]')) {
        box.checked = all.checked;
      }
    });
  }
})();
