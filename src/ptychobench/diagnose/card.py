"""A self-contained HTML card per diagnosed image: the image the detector saw, its labels
with probabilities, the warnings and notes the terminal prints (why this may not be a
reconstruction; where a measurement overruled the detector), the measurements with units
and meanings, and the advice with its evidence. One file, the image inline, no scripts or
external resources, so it can be mailed or attached to a logbook as it is."""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

from .api import Diagnosis
from .io import DiagnoseError

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}
h1{font-size:1.3em;word-break:break-all} h2{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse}
td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.on{font-weight:bold;color:#a40000} .muted{color:#777} .warn{color:#8a5a00;font-weight:bold}
img{image-rendering:pixelated;border:1px solid #999}
pre{background:#f5f5f5;padding:.8em;white-space:pre-wrap;font-size:.85em}
"""


def _png_data_url(img) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def card_html(d: Diagnosis) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(d.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(d.name)}</h1>",
        f"<p class='muted'>{escape(d.kind)} field, {d.shape[0]} x {d.shape[1]} px; {escape(d.source)}</p>",
    ]
    if d.image is not None:
        parts.append(f"<img src='{_png_data_url(d.image)}' width='384' alt='rendered phase'>")
    for w in d.warnings:
        parts.append(f"<p class='warn'>warning: {escape(w)}</p>")
    parts.append(
        f"<h2>Artifacts</h2><p>{escape(', '.join(d.labels) or 'none given')} "
        f"<span class='muted'>(detector: {escape(d.detector)})</span></p>"
    )
    for n in d.notes:
        parts.append(f"<p>note: {escape(n)}</p>")
    if d.probabilities:
        parts.append("<table><tr><th>label</th><th>probability</th><th>threshold</th></tr>")
        for lab, p in sorted(d.probabilities.items(), key=lambda kv: -kv[1]):
            t = (d.thresholds or {}).get(lab)
            cls = " class='on'" if lab in d.labels else ""
            parts.append(f"<tr{cls}><td>{escape(lab)}</td><td>{p:.2f}</td><td>{_fmt(t)}</td></tr>")
        parts.append("</table>")
    parts.append(
        "<h2>Measurements (no truth needed)</h2><table>"
        "<tr><th>measurement</th><th>value</th><th>unit</th><th>meaning</th></tr>"
    )
    for m in d.measurements.values():
        parts.append(
            f"<tr><td>{escape(m.title)}</td><td>{_fmt(m.value)}</td><td>{escape(m.unit)}</td>"
            f"<td>{escape(m.meaning)}</td></tr>"
        )
    parts.append("</table>")
    if d.frc is not None:
        rows = "".join(
            f"<tr><td>{f:.3f}</td><td>{c:.3f}</td><td>{t:.3f}</td></tr>"
            for f, c, t in zip(d.frc.frequency, d.frc.frc, d.frc.threshold)
        )
        parts.append(
            f"<h2>Fourier ring correlation</h2><p>half-bit resolution {d.frc.resolution_px:.3g} px "
            "(full period)</p><details><summary>curve</summary><table>"
            f"<tr><th>cycles/px</th><th>FRC</th><th>half-bit</th></tr>{rows}</table></details>"
        )
    if d.advice is not None:
        a = d.advice
        title = "Generic parameter advice" if a.generic else "Parameter advice"
        parts.append(
            f"<h2>{title}</h2><p class='muted'>advisor: {escape(a.advisor)}</p><table>"
            "<tr><th>option</th><th>recommended</th><th>evidence</th></tr>"
        )
        for o in a.options:
            ev = "<br>".join(escape(e) for e in o.evidence)
            cls = " class='on'" if o.chosen else ""
            parts.append(
                f"<tr{cls}><td>{o.letter}. {escape(o.text)}</td><td>{'yes' if o.chosen else 'no'}</td>"
                f"<td>{ev}</td></tr>"
            )
        parts.append("</table>")
        for n in a.notes:
            parts.append(f"<p class='muted'>note: {escape(n)}</p>")
        parts.append(f"<details><summary>text the advisor read</summary><pre>{escape(a.text)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_cards(diagnoses: list[Diagnosis], out: Path) -> list[Path]:
    """One card: ``out`` is the file (``.html``). Several: ``out`` is a folder that gets
    one card per image and an ``index.html``; nothing else is written."""
    out = Path(out).expanduser()
    try:
        if len(diagnoses) == 1 and out.suffix.lower() in (".html", ".htm"):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(card_html(diagnoses[0]), encoding="utf-8")
            return [out]
        if out.suffix.lower() in (".html", ".htm"):
            raise DiagnoseError(f"{out}: {len(diagnoses)} images need a folder for their cards, not one .html file")
        out.mkdir(parents=True, exist_ok=True)
        written, links = [], []
        used: set[str] = {"index.html"}  # the index page's name is taken: an input index.png gets index-2.html
        for d in diagnoses:
            stem = Path(d.name.split(":")[0]).stem or "image"
            name, i = f"{stem}.html", 1
            while name in used:
                i += 1
                name = f"{stem}-{i}.html"
            used.add(name)
            (out / name).write_text(card_html(d), encoding="utf-8")
            written.append(out / name)
            links.append(f"<li><a href='{escape(name)}'>{escape(d.name)}</a>: {escape(', '.join(d.labels))}</li>")
        (out / "index.html").write_text(
            f"<!doctype html><meta charset='utf-8'><title>diagnoses</title><ul>{''.join(links)}</ul>", encoding="utf-8"
        )
        return [*written, out / "index.html"]
    except OSError as e:
        raise DiagnoseError(f"{out}: cannot write the HTML card(s) ({e.strerror or e})") from None
