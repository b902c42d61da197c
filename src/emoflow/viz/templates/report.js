// The report's behaviour: clicking a sentence (table row or chart) seeks the player to its
// start; while it plays, a cursor moves over the chart and the current sentence is highlighted.
// The table and the player work without the chart (when a shared plotly.js was not found).
(function () {
  "use strict";
  const d = JSON.parse(document.getElementById("emoflow-data").textContent);
  const player = document.getElementById("player");
  const chart = document.getElementById("timeline");
  const rows = Array.from(document.querySelectorAll("#sentences tbody tr[data-start]"));
  const plotted = typeof Plotly !== "undefined" && chart !== null && typeof chart.on === "function";

  function seek(t) {
    if (!player) return;
    player.currentTime = t;
    const p = player.play();
    if (p) p.catch(() => {});
  }

  rows.forEach((r) => {
    const go = () => seek(parseFloat(r.dataset.start));
    r.addEventListener("click", go);
    r.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); go(); }
    });
  });

  // diarised: the speaker filter shows one speaker's sentences (all when its value is empty)
  const filter = document.getElementById("speaker-filter");
  const count = document.getElementById("speaker-count");
  if (filter) {
    const apply = () => {
      const who = filter.value;
      let shown = 0;
      rows.forEach((r) => {
        r.hidden = who !== "" && r.dataset.speaker !== who;
        if (!r.hidden) shown += 1;
      });
      if (count) count.textContent = who === "" ? "" : shown + " of " + rows.length + " sentences";
    };
    filter.addEventListener("change", apply);
    apply();
  }

  if (plotted) {
    chart.on("plotly_click", (ev) => {
      const p = ev.points[0];
      // a speaker lane's bar carries its start time first in customdata (its x is its length)
      if (Array.isArray(p.customdata)) { seek(p.customdata[0]); return; }
      const x = p.x;
      const s = d.sentences.find((s) => x >= s.start && x <= s.end);
      seek(s ? s.start : x);
    });
  } else if (chart !== null) {
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "The chart needs plotly.js, which this page loads from " +
      (d.plotly_src || "itself") + "; it was not found there.";
    chart.replaceChildren(note);
  }

  if (player) player.addEventListener("timeupdate", () => {
    const t = player.currentTime;
    if (plotted) {
      const k = "shapes[" + d.cursor_shape + "]";
      Plotly.relayout(chart, {[k + ".x0"]: t, [k + ".x1"]: t});
    }
    rows.forEach((r) => {
      const s = d.sentences[+r.dataset.row];
      r.classList.toggle("active", !!s && t >= s.start && t < s.end);
    });
  });
})();
