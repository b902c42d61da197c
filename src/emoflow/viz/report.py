"""The HTML report: one self-contained file (scripts, styles and audio inline; no network).

An interactive timeline of the voice's emotions (plotly) with the sentences as bands
coloured by their text emotion, the sentence table (times, text, both modalities' top
emotions, the emotion sequence), and an audio player: clicking a sentence (in the table
or on the chart) seeks the player to its start.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoflow.viz.colors import PALETTE, color

if TYPE_CHECKING:
    from emoflow.results import Result


def _audio_data_uri(samples: np.ndarray | None) -> str | None:
    """The recording as Ogg Vorbis (16 kHz mono, about 5 kB/s) in a data URI."""
    if samples is None or len(samples) == 0:
        return None
    import soundfile as sf

    buf = io.BytesIO()
    # block by block: libsndfile's Vorbis encoder overflows its stack on one large write (segfault)
    with sf.SoundFile(buf, "w", 16000, 1, format="OGG", subtype="VORBIS") as f:
        for i in range(0, len(samples), 1 << 15):
            f.write(np.clip(samples[i : i + (1 << 15)], -1, 1))
    return "data:audio/ogg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# Inside <script> the HTML parser, not JSON, decides where the script ends: "</script>",
# "<!--" and "<script" in a word all change how it reads on. JSON may write any character
# as \uXXXX, so writing <, > and & that way leaves nothing for the HTML parser to see.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (``JSON.parse`` of its text gives ``data``)."""
    return json.dumps(data, ensure_ascii=False).translate(_SCRIPT_ESCAPES)


def report_data(result: Result) -> dict[str, Any]:
    tl = result.timeline
    return {
        "duration": result.source.duration_s,
        "labels": list(tl.labels),
        "colors": {lab: color(lab) for lab in tl.labels},
        "t": [round((s.start + s.end) / 2, 3) for s in tl.spans],
        "scores": [[round(float(x), 4) for x in tl.scores[:, j]] for j in range(len(tl.labels))],
        "sentences": [
            {
                "index": s.sentence.index,
                "start": s.sentence.start,
                "end": s.sentence.end,
                "text": s.sentence.text,
                "text_top": s.text_emotion.top,
                "audio_top": s.audio_emotion.top,
                "color": color(s.text_emotion.top),
                "sequence": s.sequence,
            }
            for s in result.sentences
        ],
    }


def _fmt(t: float) -> str:
    m, s = divmod(t, 60)
    return f"{int(m)}:{s:05.2f}"


def _chip(label: str, score: float | None = None) -> str:
    extra = f" {score:.0%}" if score is not None else ""
    return f'<span class="chip" style="background:{color(label)}">{html.escape(label)}{extra}</span>'


def render_report(result: Result) -> str:
    import plotly.offline

    data = report_data(result)
    audio = _audio_data_uri(result.audio_samples)
    name = Path(result.source.path).name if result.source.path else "recording"
    rows = []
    for s in result.sentences:
        te, ae = s.text_emotion, s.audio_emotion
        rows.append(
            f'<tr data-start="{s.sentence.start:.3f}" data-index="{s.sentence.index}">'
            f'<td class="num">{s.sentence.index + 1}</td><td class="num">{_fmt(s.sentence.start)}</td>'
            f'<td class="num">{_fmt(s.sentence.end)}</td><td>{html.escape(s.sentence.text)}</td>'
            f"<td>{_chip(te.top, max(te.scores))}</td><td>{_chip(ae.top, max(ae.scores))}</td>"
            f"<td><code>{html.escape(s.sequence)}</code></td></tr>"
        )
    utt = result.utterance.scores
    legend = "".join(_chip(k) for k in PALETTE)
    models = ", ".join(
        f"{k}: {html.escape(str(v.get('id')))}" for k, v in result.models.items() if isinstance(v, dict)
    )
    player = (
        f'<audio id="player" controls preload="auto" src="{audio}"></audio>'
        if audio
        else '<p class="muted">(no audio embedded)</p>'
    )
    empty = '<tr><td colspan="7" class="muted">No sentences: no speech was transcribed.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>emoflow — {html.escape(name)}</title>
<style>
body {{ font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0; color: #222; background: #fafafa; }}
header {{ background: #1f2937; color: white; padding: 14px 24px; }}
header h1 {{ margin: 0; font-size: 20px; }} header p {{ margin: 4px 0 0; color: #cbd5e1; font-size: 13px; }}
main {{ padding: 16px 24px; max-width: 1400px; }}
.card {{ background: white; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.12); padding: 12px 16px;
         margin-bottom: 16px; }}
#player {{ width: 100%; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ text-align: left; padding: 6px 8px; border-bottom: 1px solid #eee; vertical-align: top; }}
th {{ background: #f3f4f6; position: sticky; top: 0; }}
tbody tr {{ cursor: pointer; }} tbody tr:hover {{ background: #f0f7ff; }} tr.active {{ background: #dbeafe; }}
td.num {{ white-space: nowrap; font-variant-numeric: tabular-nums; color: #555; }}
.chip {{ display: inline-block; padding: 1px 8px; border-radius: 10px; color: #111; font-size: 12px;
         margin: 1px 2px; white-space: nowrap; }}
.muted {{ color: #777; }} code {{ font-size: 12px; }}
</style>
<script>{plotly.offline.get_plotlyjs()}</script>
</head><body>
<header><h1>{html.escape(name)}</h1>
<p>{result.source.duration_s:.1f} s · {len(result.sentences)} sentences · whole-recording voice emotion:
{html.escape(utt.top)} ({max(utt.scores):.0%}) · {models}</p></header>
<main>
<div class="card">{player}</div>
<div class="card"><div id="timeline" style="height:340px"></div>
<div class="muted" style="font-size:12px">Lines: voice emotion (emotion2vec) per
{result.timeline.window_s:g} s window. Bands: sentences, coloured by their text emotion. Click to play from there.
<br>{legend}</div></div>
<div class="card"><table id="sentences"><thead><tr><th>#</th><th>start</th><th>end</th><th>sentence</th>
<th>text emotion</th><th>voice emotion</th><th>emotion sequence</th></tr></thead>
<tbody>{"".join(rows) or empty}</tbody></table></div>
</main>
<script type="application/json" id="emoflow-data">{_script_json(data)}</script>
<script>
(function () {{
  const d = JSON.parse(document.getElementById("emoflow-data").textContent);
  const player = document.getElementById("player");
  const traces = d.labels.map((lab, j) => ({{x: d.t, y: d.scores[j], name: lab, mode: "lines",
    line: {{color: d.colors[lab], width: 2}}, hovertemplate: lab + " %{{y:.0%}} at %{{x:.1f}} s<extra></extra>"}}));
  const shapes = d.sentences.map(s => ({{type: "rect", xref: "x", yref: "paper", x0: s.start, x1: s.end,
    y0: 0, y1: 1, fillcolor: s.color, opacity: 0.18, line: {{width: 0}}, layer: "below"}}));
  const cursor = {{type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1,
    line: {{color: "#111", width: 1, dash: "dot"}}}};
  const layout = {{margin: {{l: 50, r: 10, t: 10, b: 40}}, xaxis: {{title: {{text: "time (s)"}}, range: [0, d.duration]}},
    yaxis: {{title: {{text: "voice emotion probability"}}, range: [0, 1]}}, shapes: shapes.concat([cursor]), legend: {{orientation: "h"}},
    hovermode: "x unified"}};
  const chart = document.getElementById("timeline");
  Plotly.newPlot(chart, traces, layout, {{displaylogo: false, responsive: true}});
  const rows = Array.from(document.querySelectorAll("#sentences tbody tr[data-start]"));
  function seek(t) {{ if (player) {{ player.currentTime = t; const p = player.play(); if (p) p.catch(() => {{}}); }} }}
  rows.forEach(r => r.addEventListener("click", () => seek(parseFloat(r.dataset.start))));
  chart.on("plotly_click", ev => {{
    const x = ev.points[0].x;
    const s = d.sentences.find(s => x >= s.start && x <= s.end);
    seek(s ? s.start : x);
  }});
  if (player) player.addEventListener("timeupdate", () => {{
    const t = player.currentTime;
    const k = "shapes[" + shapes.length + "]";
    Plotly.relayout(chart, {{[k + ".x0"]: t, [k + ".x1"]: t}});
    rows.forEach(r => {{ const s = d.sentences[+r.dataset.index];
      r.classList.toggle("active", !!s && t >= s.start && t < s.end); }});
  }});
}})();
</script>
</body></html>
"""


def write_report(result: Result, path: Path) -> None:
    Path(path).write_text(render_report(result), encoding="utf-8")
