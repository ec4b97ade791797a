// dnsieve Alert Manager: the only script of the pages (CSP: script-src 'self').
// Plots: each <div data-plot="ID"> gets the Bokeh json_item stored in the
// non-executed <script type="application/json" id="ID"> block.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("div[data-plot]")) {
    const data = document.getElementById(el.dataset.plot);
    if (!data || typeof Bokeh === "undefined") continue;
    try {
      Bokeh.embed.embed_item(JSON.parse(data.textContent), el.id);
    } catch (err) {
      el.textContent = "The plot could not be drawn.";
      console.error(err);
    }
  }
  for (const btn of document.querySelectorAll("button.danger")) {
    btn.addEventListener("click", (ev) => {
      if (!window.confirm("Remove this entry?")) ev.preventDefault();
    });
  }
});
