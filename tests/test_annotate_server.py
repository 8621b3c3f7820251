"""The round trip against a real Label Studio server (slow; CI runs it; never skipped).

Label Studio pins numpy below what this project uses, so it lives in its own virtual
environment. The test finds its ``label-studio`` executable in ``$PTYCHOBENCH_LABEL_STUDIO``
(default: ``.lsvenv/bin/label-studio`` in the repository, which ``make labelstudio``
creates) and drives the server with the SDK through that environment's Python
(``tests/labelstudio_roundtrip.py``). If the server cannot start, the test fails.

Everything the server writes (SQLite database, media, exports) goes to a temporary
folder; it listens on 127.0.0.1 only, opens no browser, and makes no outside calls
(version check, analytics and error reporting are switched off).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptychobench.annotate.config import choices_result
from ptychobench.cli import app
from ptychobench.data import load_dataset
from ptychobench.tasks import ARTIFACT_LABELS, PARAMS

REPO = Path(__file__).resolve().parents[1]
LABEL_STUDIO = Path(os.environ.get("PTYCHOBENCH_LABEL_STUDIO", REPO / ".lsvenv" / "bin" / "label-studio"))
DRIVER = Path(__file__).parent / "labelstudio_roundtrip.py"
TOKENS = ["ptychobench-test-annotator-one", "ptychobench-test-annotator-two"]
START_TIMEOUT_S = 600  # the first init applies ~250 migrations to SQLite: 60-110 s on 2 busy cores
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A fresh server with two annotators (legacy API tokens); yields (url, document root)."""
    if not LABEL_STUDIO.is_file():
        pytest.fail(
            f"no Label Studio at {LABEL_STUDIO}: run `make labelstudio` (or set "
            "PTYCHOBENCH_LABEL_STUDIO to a label-studio executable)"
        )
    tmp = tmp_path_factory.mktemp("labelstudio")
    root = tmp / "root"
    root.mkdir()
    env = {
        **os.environ,
        "HOME": str(tmp),
        "LABEL_STUDIO_BASE_DATA_DIR": str(tmp / "data"),
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
        "OMP_NUM_THREADS": "1",
    }
    log = tmp / "server.log"
    t0 = time.perf_counter()
    for i, token in enumerate(TOKENS, 1):  # the first init also creates the database and organization
        r = subprocess.run(
            [
                str(LABEL_STUDIO),
                "init",
                "--quiet",
                "--username",
                f"annotator{i}@example.org",
                "--password",
                f"pw-{token}",
                "--user-token",
                token,
                "--enable-legacy-api-token",
            ],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if r.returncode != 0:
            pytest.fail(f"label-studio init failed ({r.returncode}): {(r.stdout + r.stderr)[-2000:]}")
    port = _free_port()
    with log.open("w") as f:
        proc = subprocess.Popen(
            [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Label Studio exited ({proc.returncode}) before serving: {_log_tail(log)}")
            if time.perf_counter() - t0 > START_TIMEOUT_S:
                pytest.fail(f"Label Studio did not answer {url}/health within {START_TIMEOUT_S} s: {_log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        print(f"\nLabel Studio up in {time.perf_counter() - t0:.1f} s")
        yield url, root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_round_trip_through_a_real_label_studio(label_studio, tmp_path, tiny_dataset):
    from test_annotate import make_run

    url, root = label_studio
    t0 = time.perf_counter()
    run = make_run(tmp_path, tiny_dataset)
    # the run cell's project goes to the server's document root itself (the default document root is
    # --out, as docs/annotate.md tells users); the blind one to a sub-folder, with --document-root
    res = runner.invoke(app, ["annotate", "export", str(run), "--cell", "artifacts/zero-shot", "--out", str(root)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "annotate",
            "export",
            str(tiny_dataset),
            "--task",
            "params",
            "--split",
            "test",
            "--blind",
            "--out",
            str(root / "blind"),
            "--document-root",
            str(root),
        ],
    )
    assert res.exit_code == 0, res.output
    art = [t["data"]["ptychobench_id"] for t in json.loads((root / "artifacts/tasks.json").read_text())]
    par = [t["data"]["ptychobench_id"] for t in json.loads((root / "blind/params/tasks.json").read_text())]
    # two annotators: the first labels every image, the second labels all but the last, which they skip
    first = {sid: sorted({ARTIFACT_LABELS[i % 11], "Blurring"}) for i, sid in enumerate(art)}
    second = {sid: sorted({ARTIFACT_LABELS[i % 11], "Phase ramp"}) for i, sid in enumerate(art[:-1])}
    p_first = {sid: [PARAMS.labels[i], "K"] for i, sid in enumerate(par)}
    p_second = {sid: [PARAMS.labels[i]] for i, sid in enumerate(par)}
    plan = {
        "url": url,
        "tokens": TOKENS,
        "projects": [
            {
                "label_config": str(root / "artifacts/label_config.xml"),
                "tasks": str(root / "artifacts/tasks.json"),
                "images_dir": str(root / "artifacts/images"),
                "export": str(tmp_path / "artifacts-export.json"),
                "export_with_emails": str(tmp_path / "artifacts-export-emails.json"),
                "annotations": [
                    {s: choices_result("artifacts", v) for s, v in first.items()},
                    {**{s: choices_result("artifacts", v) for s, v in second.items()}, art[-1]: None},
                ],
            },
            {
                "label_config": str(root / "blind/params/label_config.xml"),
                "tasks": str(root / "blind/params/tasks.json"),
                "images_dir": None,
                "export": str(tmp_path / "params-export.json"),
                "annotations": [
                    {s: choices_result("params", v) for s, v in p_first.items()},
                    {s: choices_result("params", v) for s, v in p_second.items()},
                ],
            },
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    driver = subprocess.run(
        [str(LABEL_STUDIO.parent / "python"), str(DRIVER), str(tmp_path / "plan.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    summary = json.loads(driver.stdout.strip().splitlines()[-1])
    ids = [u["id"] for u in summary["users"]]
    who = [f"user-{i}" for i in ids]
    a_proj, p_proj = summary["projects"]

    # the server showed the very images the export wrote, and kept the cell's pre-annotations
    for sid, sha in a_proj["image_sha256"].items():
        assert sha == _sha(next((root / "artifacts/images").glob(f"{sid}.*")))
    assert len(a_proj["image_sha256"]) == len(art) == 6
    with_pred = [s for s, v in a_proj["predictions"].items() if v]
    assert len(with_pred) == 5 and all(a_proj["predictions"][s] == ["artifacts/zero-shot"] for s in with_pred)
    assert not any(p_proj["predictions"].values())  # --blind: no pre-annotations

    # the export comes back as a dataset: labels, annotators, skips and images survive
    res = runner.invoke(
        app,
        [
            "annotate",
            "import",
            str(tmp_path / "artifacts-export.json"),
            "--images",
            str(root / "artifacts/images"),
            "--out",
            str(tmp_path / "experts"),
            # a run's cell holds test samples only: issue 26 asks to re-split them explicitly
            "--test-fraction",
            "0.25",
        ],
    )
    assert res.exit_code == 0, res.output
    ds = load_dataset(tmp_path / "experts")
    got = {s.id: s for sp in ("train", "test") for s in ds.samples("artifacts", sp)}
    assert set(got) == set(art)
    for sid, s in got.items():
        meta = s.metadata["annotate"]
        expected = {who[0]: first[sid]} | ({who[1]: second[sid]} if sid in second else {})
        assert {k: sorted(v) for k, v in meta["annotators"].items()} == expected
        assert meta["skipped_by"] == ([] if sid in second else [who[1]])
        want = set(first[sid]) & set(second[sid]) if sid in second else set(first[sid])
        assert s.labels == want  # two annotators: what both ticked; one: theirs
        assert _sha(s.image) == a_proj["image_sha256"][sid]
    # the same labels exported with the annotators expanded come back under their e-mail addresses
    res = runner.invoke(
        app,
        [
            "annotate",
            "import",
            str(tmp_path / "artifacts-export-emails.json"),
            "--images",
            str(root / "artifacts/images"),
            "--out",
            str(tmp_path / "experts-emails"),
            "--test-fraction",
            "0.25",
        ],
    )
    assert res.exit_code == 0, res.output
    by_email = {
        s.id: s for sp in ("train", "test") for s in load_dataset(tmp_path / "experts-emails").samples("artifacts", sp)
    }
    emails = [u["email"] for u in summary["users"]]
    assert emails == ["annotator1@example.org", "annotator2@example.org"]
    for sid, s in by_email.items():
        assert {k: sorted(v) for k, v in s.metadata["annotate"]["annotators"].items()} == {emails[0]: first[sid]} | (
            {emails[1]: second[sid]} if sid in second else {}
        )
        assert s.labels == got[sid].labels
    res = runner.invoke(
        app,
        [
            "annotate",
            "import",
            str(tmp_path / "params-export.json"),
            "--out",
            str(tmp_path / "experts-params"),
            "--test-fraction",
            "0.25",
        ],
    )
    assert res.exit_code == 0, res.output
    pds = load_dataset(tmp_path / "experts-params")
    pgot = {s.id: s for sp in ("train", "test") for s in pds.samples("params", sp)}
    assert {sid: set(s.labels) for sid, s in pgot.items()} == {sid: set(v) for sid, v in p_second.items()}
    assert all(
        s.metadata["annotate"]["annotators"][who[0]] == sorted(p_first[sid], key=PARAMS.labels.index)
        for sid, s in pgot.items()
    )
    res = runner.invoke(
        app,
        [
            "annotate",
            "agreement",
            str(tmp_path / "artifacts-export.json"),
            "--against",
            str(tiny_dataset),
            "--out",
            str(tmp_path / "agreement"),
        ],
    )
    assert res.exit_code == 0, res.output
    agreement = json.loads((tmp_path / "agreement" / "agreement.json").read_text())
    assert agreement["annotators"] == who and agreement["pairs"][0]["n"] == 5
    print(f"round trip (export, 2 projects, 2 annotators, export, import, agreement): {time.perf_counter() - t0:.1f} s")
