"""``ptychobench report RUN_DIR``: tables, plots, paired comparisons and a summary in
words, from the run's stores only (every shard merged). Writes ``report.md`` and a
self-contained ``report.html`` (plots embedded)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from ..eval.compare import by_config, paired_comparisons
from ..eval.score import score_records
from ..eval.store import read_run
from .paper_tables import paper_sections
from .plots import make_plots
from .tables import (
    ADAPTER_HEAD,
    COMP_HEAD,
    HEAD,
    adapter_cells,
    adapter_rows,
    comp_cells,
    html_table,
    main_rows,
    md_table,
    row_cells,
)
from .words import adapter_words, summary_in_words


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:nth-child(-n+4){text-align:left}tr.best td{background:#fff4c2;font-weight:600}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}
.summary p,.summary li{font-size:15px;line-height:1.5}"""


def write_report(run_dir: Path | str, seed: int = 0) -> dict[str, Path]:
    run_dir = Path(run_dir)
    records = read_run(run_dir)
    results = score_records(records, seed=seed)
    recs = by_config(records)
    comps = paired_comparisons(results, recs)
    adapters = adapter_rows(results)
    words = summary_in_words(results, comps) + adapter_words(adapters)
    figs = make_plots(results, run_dir / "report_files")
    rows = main_rows(results)
    adapter_table = [adapter_cells(a) for a in adapters]

    (run_dir / "scores.json").write_text(json.dumps(
        [{"config": r.config, "task": r.task, "meta": r.meta, **r.scores.as_dict()} for r in results], indent=1))
    md = ["# PtychoBench report", "", f"Run folder: `{run_dir}`; {len(records)} stored predictions in "
          f"{len(results)} cells (every shard's store merged).", "", "## Summary", "", *words,
          "## Main table", "", "micro-F1 with a 95% percentile bootstrap CI (10,000 resamples over test samples); "
          "★ marks the best row per task. Parse failures and errors count as empty predictions.", "",
          md_table(HEAD, [row_cells(r) for r in rows]), "", "## Paired comparisons", "",
          md_table(COMP_HEAD, [comp_cells(c) for c in comps]) if comps else "(no pairs of cells to compare)", "",
          *(["## Fine-tuned adapters", "", md_table(ADAPTER_HEAD, adapter_table), ""] if adapters else []),
          "## Plots", ""]
    for caption, p in figs:
        md += [f"![{caption}]({p.relative_to(run_dir)})", "", f"*{caption}*", ""]
    paper_md, paper_html = paper_sections(results, recs, comps)  # the paper's layout (report/paper_tables.py)
    md += paper_md
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    def para(line: str) -> str:
        text = html.escape(line)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return f"<li>{text[2:]}</li>" if line.startswith("- ") else (f"<p>{text}</p>" if line else "")

    body = ["<h1>PtychoBench report</h1>", f"<p>Run folder: <code>{html.escape(str(run_dir))}</code>; "
            f"{len(records)} stored predictions in {len(results)} cells.</p>",
            "<h2>Summary</h2><div class='summary'>", *(para(x) for x in words), "</div>",
            "<h2>Main table</h2><p>micro-F1 with a 95% percentile bootstrap CI (10,000 resamples over test "
            "samples); the highlighted row is the best per task.</p>",
            html_table(HEAD, [row_cells(r) for r in rows], [r["best"] for r in rows]),
            "<h2>Paired comparisons</h2>",
            html_table(COMP_HEAD, [comp_cells(c) for c in comps]) if comps else "<p>(none)</p>",
            *(["<h2>Fine-tuned adapters</h2>", html_table(ADAPTER_HEAD, adapter_table)] if adapters else []),
            "<h2>Plots</h2>"]
    for caption, p in figs:
        data = base64.b64encode(p.read_bytes()).decode()
        body.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    body += paper_html
    html_path = run_dir / "report.html"
    html_path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>PtychoBench report</title>"
                         f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    return {"md": md_path, "html": html_path, "scores": run_dir / "scores.json"}
