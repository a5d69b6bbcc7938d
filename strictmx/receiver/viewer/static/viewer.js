// strictmx viewer: live rows on the session list, copy buttons on the session page.
// Everything else works without this file. Rows arrive as HTML the server rendered
// (and escaped); nothing here builds markup from data.
"use strict";

function startLive(table) {
  const url = table.dataset.live;
  if (!url || !window.EventSource) return;
  const rows = document.getElementById("rows");
  const live = document.getElementById("live");
  const source = new EventSource(url);
  source.addEventListener("open", () => { if (live) live.hidden = false; });
  source.addEventListener("error", () => { if (live) live.hidden = true; });
  source.addEventListener("rows", (event) => {
    const data = JSON.parse(event.data);
    for (const row of data.rows) {
      const old = document.getElementById("s-" + row.id);
      if (old) {
        old.outerHTML = row.html;
      } else {
        rows.insertAdjacentHTML("afterbegin", row.html);
      }
    }
    const empty = document.getElementById("empty");
    if (empty && data.rows.length) empty.remove();
    table.dataset.updated = String(Date.now());
  });
}

function startCopy() {
  for (const button of document.querySelectorAll("button.copy")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(source.textContent).then(
        () => { button.textContent = "Copied"; },
        () => { button.textContent = "Copy failed: select the text"; },
      );
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("sessions");
  if (table) startLive(table);
  startCopy();
});
