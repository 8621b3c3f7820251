"""``ptychobench report RUN_DIR``: tables, plots, paired comparisons and a summary in
words, from the run's stores only (every shard merged). Writes ``report.md`` and a
self-contained ``report.html``: a headline (what ran on what, a forest plot, comparisons
in sentences), the tables, the plots and a per-sample browser, all embedded."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import StoreError
from ..eval.compare import by_config, paired_comparisons
from ..eval.score import score_records
from ..eval.store import read_run
from ..files import write_atomic
from ..safeio import read_yaml
from ..tasks import get_task
from .browser import CSS as BROWSER_CSS
from .browser import browser_html
from .findings import HEAD as FINDINGS_HEAD
from .findings import findings_intro, paper_findings
from .format import md_safe
from .headline import comparison_sentences, fact_lines, facts
from .paper_tables import paper_sections
from .payoff import (
    PAYOFF_COMP_HEAD,
    PAYOFF_HEAD,
    payoff_comparisons,
    payoff_note,
    payoff_plot,
    payoff_rows,
    read_payoff,
)
from .plots import forest_plot, make_plots
from .samples import browser_data, find_dataset
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

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;overflow-wrap:break-word}code{overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:13px;margin:0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:nth-child(-n+4){text-align:left}tr.best td{background:#fff4c2;font-weight:600}
.scroll{overflow-x:auto;margin:1em 0;max-width:100%}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:.5em 0}figure{margin:1.5em 0}
figcaption{font-size:13px;color:#555}
.summary p,.summary li,.headline li{font-size:15px;line-height:1.5}
.facts td,.facts th{text-align:left;vertical-align:top;font-size:13px}.facts th{white-space:nowrap}
.warn{background:#fff1d6;border-left:4px solid #e0a000;padding:.4em .7em}
pre{font-size:12px;background:#f6f6f6;padding:.5em;overflow-x:auto}
nav a{margin-right:1em}
@media (max-width:600px){body{margin:.5em auto;padding:0 .5em}h1{font-size:1.4em}h2{font-size:1.15em}
table{font-size:11px}th,td{padding:2px 4px}.summary p,.summary li,.headline li{font-size:14px}
figure{overflow-x:auto}figure img{max-width:none;width:640px}
.main td:nth-child(9),.main th:nth-child(9){position:sticky;right:0;background:#fff;box-shadow:-2px 0 3px #0002}
.main th:nth-child(9){background:#f0f0f0}.main tr.best td:nth-child(9){background:#fff4c2}
.pb-filters label{flex:1 1 100%;display:flex;gap:.4em;align-items:center}.pb-filters select{flex:1;max-width:none}}"""


def latest_failure_rate(run_dir: Path) -> float | None:
    """``max_failure_rate`` of the config the folder last ran under (``runs.jsonl`` names
    it), so a report follows the current config; None (each record's own) when unknown."""
    try:
        last = json.loads((run_dir / "runs.jsonl").read_text().strip().splitlines()[-1])
        data = read_yaml(run_dir / last["config"], StoreError)
        value = data.get("max_failure_rate") if isinstance(data, dict) else None
    except (OSError, ValueError, IndexError, KeyError, TypeError, RecursionError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


#: the report's files, moved into the run folder together (report_files/ first, scores last)
REPORT_FILES = ("report_files", "report.md", "report.html", "scores.json")


def write_report(run_dir: Path | str, seed: int = 0, dataset: Path | str | None = None) -> dict[str, Path]:
    """Score every cell of the run and write ``report.md``, ``report.html`` (one file: plots
    and the per-sample browser embedded) and ``scores.json``. ``dataset`` points at the
    run's dataset when it has moved (the browser shows its images and texts).

    Everything is written into a temporary folder beside them first and moved in as a set
    when all of it is written, so a kill leaves the previous report whole, never a new
    ``scores.json`` beside an old ``report.html``."""
    run_dir = Path(run_dir)
    records = read_run(run_dir)
    staging = Path(tempfile.mkdtemp(prefix=".report-new-", dir=run_dir))
    try:
        _write_report(run_dir, staging, records, seed, dataset)
        _move_in(staging, run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"md": run_dir / "report.md", "html": run_dir / "report.html", "scores": run_dir / "scores.json"}


def _move_in(staging: Path, run_dir: Path) -> None:
    """Each file of the finished report over the old one (a rename each); the old plots
    folder is swapped out whole."""
    old = run_dir / f".report-old-{os.getpid()}"
    if (run_dir / "report_files").exists():
        os.replace(run_dir / "report_files", old)
    try:
        for name in REPORT_FILES:
            if (staging / name).exists():
                os.replace(staging / name, run_dir / name)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _write_report(run_dir: Path, staging: Path, records: list[dict], seed: int, dataset: Path | str | None) -> None:
    results = score_records(records, seed=seed, max_failure_rate=latest_failure_rate(run_dir))
    recs = by_config(records)
    comps = paired_comparisons(results, recs)
    findings = [f.cells() for f in paper_findings(results, recs)]
    adapters = adapter_rows(results)
    words = summary_in_words(results, comps) + adapter_words(adapters)
    files = staging / "report_files"
    forest = forest_plot(results, files)
    figs = make_plots(results, files)
    payoff = read_payoff(run_dir)  # issue 12: written by `ptychobench payoff` / `run` on simulated data
    payoff_fig = payoff_plot(payoff, files) if payoff else None
    figs += [payoff_fig] if payoff_fig else []
    rows = main_rows(results)
    adapter_table = [adapter_cells(a) for a in adapters]
    head_facts = facts(run_dir, records)
    facts_list = fact_lines(head_facts)
    sentences = comparison_sentences(results, comps)
    ds, note = find_dataset(run_dir, records, dataset)
    browser = browser_data(records, ds, note)

    write_atomic(staging / "scores.json", json.dumps([r.as_dict() for r in results], indent=1))
    md = [
        "# PtychoBench report",
        "",
        *(f"- **{k}**: {v}" for k, v in facts_list),
        "",
        f"Run folder: `{run_dir}`; {len(records)} stored predictions in "
        f"{len(results)} cells (every shard's store merged).",
        "",
    ]
    if forest:
        md += [f"![{forest[0]}]({forest[1].relative_to(staging)})", ""]
    for task, ss in sentences.items():
        md += [f"**{get_task(task).title}**", "", *(f"- {x}" for x in ss), ""]
    md += [
        "## Summary",
        "",
        *words,
        "## Main table",
        "",
        "micro-F1 with a 95% percentile bootstrap CI (10,000 resamples over test samples); "
        "★ marks the best row per task. Parse failures and errors count as empty predictions.",
        "",
        md_table(HEAD, [row_cells(r) for r in rows]),
        "",
        *(["## Paper findings", "", findings_intro(), "", md_table(FINDINGS_HEAD, findings), ""] if findings else []),
        "## Paired comparisons",
        "",
        md_table(COMP_HEAD, [comp_cells(c) for c in comps]) if comps else "(no pairs of cells to compare)",
        "",
        *(["## Fine-tuned adapters", "", md_table(ADAPTER_HEAD, adapter_table), ""] if adapters else []),
        *(
            [
                "## Payoff of parameter advice",
                "",
                payoff_note(payoff),
                "",
                md_table(PAYOFF_HEAD, payoff_rows(payoff)),
                "",
                "Paired comparisons on payoff (bootstrap over the samples both answered):",
                "",
                md_table(PAYOFF_COMP_HEAD, payoff_comparisons(payoff)),
                "",
            ]
            if payoff
            else []
        ),
        "## Plots",
        "",
    ]
    for caption, p in figs:
        md += [f"![{caption}]({p.relative_to(staging)})", "", f"*{caption}*", ""]
    paper_md, paper_html = paper_sections(results, recs, comps)  # the paper's layout (report/paper_tables.py)
    md += paper_md
    md += [
        "Every test sample with each cell's reply, parsed labels and demonstrations: see the "
        "per-sample browser in `report.html`.",
        "",
    ]
    write_atomic(staging / "report.md", "\n".join(md_safe(line) for line in md) + "\n")

    def para(line: str) -> str:
        text = html.escape(line)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return f"<li>{text[2:]}</li>" if line.startswith("- ") else (f"<p>{text}</p>" if line else "")

    def figure(caption: str, p: Path) -> str:
        data = base64.b64encode(p.read_bytes()).decode()
        return (
            f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def scroll(table: str) -> str:
        return f"<div class='scroll'>{table}</div>"

    limited = [d["limit"] for d in head_facts["datasets"] if d["limit"]]
    body = [
        "<h1>PtychoBench report</h1>",
        "<nav><a href='#summary'>summary</a><a href='#main'>main table</a><a href='#plots'>plots</a>"
        "<a href='#samples'>samples</a></nav>",
        "<section class='headline'>",
        *(
            [
                f"<p class='warn'>This run used only the first {', '.join(map(str, sorted(set(limited))))} test "
                "samples per task (<code>limit</code>): its numbers describe that subset.</p>"
            ]
            if limited
            else []
        ),
        scroll(
            "<table class='facts'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{para(v)[3:-4]}</td></tr>" for k, v in facts_list)
            + "</table>"
        ),
        *(
            f"<details><summary>{html.escape(name)}</summary><pre>{html.escape(text)}</pre></details>"
            for name, text in head_facts["configs"].items()
        ),
        *([figure(*forest)] if forest else []),
        *(
            f"<h3>{html.escape(get_task(task).title)}</h3><ul>"
            + "".join(f"<li>{html.escape(x)}</li>" for x in ss)
            + "</ul>"
            for task, ss in sentences.items()
        ),
        "</section>",
        f"<p>Run folder: <code>{html.escape(str(run_dir))}</code>; "
        f"{len(records)} stored predictions in {len(results)} cells.</p>",
        "<h2 id='summary'>Summary</h2><div class='summary'>",
        *(para(x) for x in words),
        "</div>",
        "<h2 id='main'>Main table</h2><p>micro-F1 with a 95% percentile bootstrap CI (10,000 resamples over test "
        "samples); the highlighted row is the best per task.</p>",
        f"<div class='scroll main'>{html_table(HEAD, [row_cells(r) for r in rows], [r['best'] for r in rows])}</div>",
        *(
            [
                "<h2 id='findings'>Paper findings</h2>",
                f"<p>{html.escape(findings_intro())}</p>",
                scroll(html_table(FINDINGS_HEAD, [[x.replace("`", "") for x in row] for row in findings])),
            ]
            if findings
            else []
        ),
        "<h2>Paired comparisons</h2>",
        scroll(html_table(COMP_HEAD, [comp_cells(c) for c in comps])) if comps else "<p>(none)</p>",
        *(["<h2>Fine-tuned adapters</h2>", scroll(html_table(ADAPTER_HEAD, adapter_table))] if adapters else []),
        *(
            [
                "<h2>Payoff of parameter advice</h2>",
                f"<p>{html.escape(payoff_note(payoff))}</p>",
                scroll(html_table(PAYOFF_HEAD, payoff_rows(payoff))),
                # every pair of cells is many rows (28 for 8 cells): folded under a count
                f"<details><summary>Paired comparisons on payoff: {len(payoff_comparisons(payoff))} pairs "
                "(bootstrap over the samples both answered)</summary>"
                + scroll(html_table(PAYOFF_COMP_HEAD, payoff_comparisons(payoff)))
                + "</details>",
            ]
            if payoff
            else []
        ),
        "<h2 id='plots'>Plots</h2>",
        *(figure(c, p) for c, p in figs),
        *(scroll(x) if x.startswith("<table") else x for x in paper_html),
        "<h2 id='samples'>Samples</h2>",
        "<p>Every test sample with the gold labels and, per cell, the reply, the parsed labels, the "
        "demonstrations shown (hover for their ids and labels) and the sample's F1.</p>",
        browser_html(browser),
    ]
    write_atomic(
        staging / "report.html",
        (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>PtychoBench report</title>"
            f"<style>{CSS}{BROWSER_CSS}</style></head><body>{''.join(body)}</body></html>"
        ),
    )
