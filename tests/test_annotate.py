"""The Label Studio round trip without a server: config, export, import, agreement, CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ptychobench.annotate import AnnotateError
from ptychobench.annotate.agreement import alpha, kappa, measure
from ptychobench.annotate.cli import app
from ptychobench.annotate.config import canonical_label, label_config
from ptychobench.annotate.export import export_project, safe_name, unique_safe_names
from ptychobench.annotate.importer import import_export
from ptychobench.annotate.load import consensus, read_export
from ptychobench.data import DatasetError, Sample, load_dataset, write_dataset
from ptychobench.eval.predict import make_record
from ptychobench.eval.store import PredictionStore
from ptychobench.tasks import ARTIFACT_LABELS, ARTIFACTS, PARAMS

FIXTURES = Path(__file__).parent / "fixtures"
EXPORT = FIXTURES / "labelstudio_export.json"
BAD_EXPORT = FIXTURES / "labelstudio_export_unknown_label.json"
runner = CliRunner()


def fixture_images(folder: Path) -> Path:
    """The images the hand-made export's tasks show, under their own (un-prefixed) names."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["ic_001", "ncm_002", "ic_003", "ncm_004", "ic_005", "ncm_006"]):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("task", ["artifacts", "params"])
def test_label_config_offers_exactly_the_task_labels(task):
    root = ET.fromstring(label_config(task))
    choices = root.find("Choices")
    assert choices.get("choice") == "multiple" and choices.get("name") == task
    spec = ARTIFACTS if task == "artifacts" else PARAMS
    stored = [c.get("alias") or c.get("value") for c in choices.findall("Choice")]
    assert stored == list(spec.labels)
    if task == "params":  # the expert reads letter and text, the export stores the letter
        assert choices.findall("Choice")[6].get("value") == "G. Enable position correction"
        assert root.find("Text").get("value") == "$text"
    else:
        assert root.find("Image").get("value") == "$image"


def test_canonical_label_accepts_the_spellings_an_export_may_carry():
    assert canonical_label(PARAMS, "G") == "G"
    assert canonical_label(PARAMS, "G. Enable position correction") == "G"
    assert canonical_label(PARAMS, "Enable position correction") == "G"
    assert canonical_label(PARAMS, "Z") is None
    assert canonical_label(ARTIFACTS, "Grid artifacts") == "Grid artifacts"
    assert canonical_label(ARTIFACTS, "grid artifacts") == "Grid artifacts"
    assert canonical_label(ARTIFACTS, "Moire fringes") is None


def test_safe_names_are_file_names_and_distinct():
    assert safe_name("../a/b c#2") == "a_b_c_2"
    names = unique_safe_names(["a/b", "a_b", "A_B", "x"])
    assert len({n.lower() for n in names.values()}) == 4
    assert all("/" not in n and not n.startswith(".") for n in names.values())


# --------------------------------------------------------------------------- consensus


def test_consensus_is_a_strict_majority_and_lists_ties():
    labels, ties = consensus({"a": frozenset({"Grid artifacts", "Blurring"}), "b": frozenset({"Grid artifacts"})})
    assert labels == {"Grid artifacts"} and ties == ["Blurring"]
    labels, ties = consensus(
        {
            "a": frozenset({"Blurring"}),
            "b": frozenset({"Blurring"}),
            "c": frozenset({"Low contrast", "No obvious artifacts"}),
        }
    )
    assert labels == {"Blurring"} and ties == []
    labels, _ = consensus({"a": frozenset({"Phase ramp", "No obvious artifacts"})})
    assert labels == {"Phase ramp"}  # an artifact and "none" contradict; the artifact had its majority


# --------------------------------------------------------------------------- import of the hand-made export


def test_read_export_keeps_every_annotator_skip_and_newest_answer():
    c = read_export(EXPORT)
    assert c.task == "artifacts"
    assert c.annotators == ["b.expert@aps.example", "user-1", "user-3"]
    by = {it.sample_id: it for it in c.items}
    assert set(by) == {"ic_001", "ncm_002", "ic_003", "ncm_004", "ic_005", "ncm_006"}
    assert by["ic_001"].labels_by == {
        "user-1": {"Grid artifacts", "Blurring"},
        "b.expert@aps.example": {"Grid artifacts"},
        "user-3": {"Grid artifacts", "Phase ramp"},
    }
    assert by["ic_001"].consensus == {"Grid artifacts"}
    assert by["ncm_002"].consensus == {"No obvious artifacts"}
    assert by["ic_003"].skipped_by == ["b.expert@aps.example"]
    assert by["ic_003"].consensus == {"Line artifacts"} and by["ic_003"].ties == ["Noisy artifacts"]
    # user-1 answered ncm_006 twice: the newer answer counts; the comment box is not a label
    assert by["ncm_006"].labels_by["user-1"] == {"Halo artifacts", "Singularity artifacts"}
    assert [it.sample_id for it in c.skipped] == ["ncm_004"]
    assert [it.sample_id for it in c.unannotated] == ["ic_005"]


def test_unknown_label_is_one_error_naming_task_label_and_annotator():
    with pytest.raises(AnnotateError) as e:
        read_export(BAD_EXPORT)
    msg = str(e.value)
    assert "task 202" in msg and "'Moire fringes'" in msg and "b.expert@aps.example" in msg
    assert str(BAD_EXPORT) in msg and isinstance(e.value, DatasetError)


def test_import_writes_a_valid_dataset_and_reports_skips(tmp_path):
    images = fixture_images(tmp_path / "imgs")
    r = import_export(EXPORT, tmp_path / "experts", images=images, seed=0)
    ds = load_dataset(tmp_path / "experts")
    samples = {s.id: s for sp in ("train", "test") for s in ds.samples("artifacts", sp)}
    assert set(samples) == {"ic_001", "ncm_002", "ic_003", "ncm_006"}  # skipped/unannotated are not samples
    assert samples["ic_001"].labels == {"Grid artifacts"}
    meta = samples["ic_003"].metadata["annotate"]
    assert meta["annotators"] == {"user-1": ["Line artifacts", "Noisy artifacts"], "user-3": ["Line artifacts"]}
    assert meta["skipped_by"] == ["b.expert@aps.example"] and meta["ties"] == ["Noisy artifacts"]
    assert meta["task_id"] == 103
    info = ds.manifest["annotate"]
    assert [s["sample_id"] for s in info["skipped"]] == ["ncm_004"]
    assert [s["sample_id"] for s in info["unannotated"]] == ["ic_005"]
    assert {t["sample_id"] for t in info["ties"]} == {"ic_003"}
    assert "random" in r.split_rule and len(ds.samples("artifacts", "test")) == 1
    # the image is the one the task showed (upload prefix removed), copied into the dataset
    img = samples["ncm_002"].image
    assert img.is_relative_to(tmp_path / "experts")
    assert np.asarray(Image.open(img)).tolist() == np.asarray(Image.open(images / "ncm_002.png")).tolist()


def test_import_without_images_or_with_a_missing_one_fails_clearly(tmp_path):
    with pytest.raises(AnnotateError, match="pass --images DIR"):
        import_export(EXPORT, tmp_path / "x")
    images = fixture_images(tmp_path / "imgs")
    (images / "ic_003.png").unlink()
    with pytest.raises(AnnotateError, match=r"task 103 \(sample 'ic_003'\): image 'ic_003.png' not found"):
        import_export(EXPORT, tmp_path / "x", images=images)


def test_import_of_the_parameter_task_reads_letters_and_option_texts(tmp_path):
    def task(tid, text, choices_by):
        return {
            "id": tid,
            "data": {"text": text, "split": "train" if tid < 3 else "test"},
            "annotations": [
                {
                    "id": tid * 10 + i,
                    "completed_by": i,
                    "was_cancelled": False,
                    "result": [{"from_name": "params", "to_name": "text", "type": "choices", "value": {"choices": ch}}],
                }
                for i, ch in enumerate(choices_by, 1)
            ],
        }

    export = tmp_path / "params.json"
    export.write_text(
        json.dumps(
            [
                task(1, "Position errors visible.", [["G", "K"], ["G. Enable position correction"]]),
                task(2, "Probe looks multimodal.", [["Increase number of probe modes"], ["J"]]),
                task(3, "Fine as it is.", [["L"], ["L"]]),
            ]
        )
    )
    r = import_export(export, tmp_path / "p", name="p")
    train = {s.id: s for s in r.dataset.samples("params", "train")}
    assert train["task-1"].labels == {"G"} and train["task-2"].labels == {"J"}
    assert train["task-1"].text == "Position errors visible."
    assert r.dataset.samples("params", "test")[0].labels == {"L"}
    assert r.split_rule == "the splits the tasks carry"


# --------------------------------------------------------------------------- export


def _weird_dataset(tmp_path: Path) -> Path:
    img = tmp_path / "raw.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(img)
    samples = [
        Sample(sid, split, "artifacts", "ic", "", img, frozenset({"Blurring"}), {"truth": 1})
        for sid, split in (("x1", "train"), ("x2", "train"), ("t1", "test"))
    ]
    samples += [
        Sample(f"p{i}", sp, "params", "ic", f"text {i}", None, frozenset({"G"}), {})
        for i, sp in enumerate(("train", "test"))
    ]
    root = write_dataset(tmp_path / "weird", "weird", "1", samples)
    train = root / "artifacts" / "train.jsonl"  # ids a file system cannot take as they are
    text = train.read_text().replace('"id": "x1"', '"id": "a/b c#1"')
    train.write_text(text.replace('"id": "x2"', '"id": "a_b_c_1"'))
    return root


def test_export_writes_only_under_out_with_safe_image_names(tmp_path, tiny_dataset):
    before = files_under(tmp_path)
    s = export_project(str(tiny_dataset), tmp_path / "ls")
    written = files_under(tmp_path) - before
    assert written and all(p.is_relative_to(tmp_path / "ls") for p in written)
    assert s.tasks == {"artifacts": 18, "params": 18} and s.predictions == 0
    tasks = json.loads((tmp_path / "ls" / "artifacts" / "tasks.json").read_text())
    t0 = tasks[0]["data"]
    assert t0["image"] == f"/data/local-files/?d=artifacts/images/{t0['image_file']}"
    assert (tmp_path / "ls" / "artifacts" / "images" / t0["image_file"]).is_file()
    assert "dataset_labels" in t0 and "predictions" not in tasks[0]
    ds = load_dataset(tiny_dataset)
    assert t0["dataset_labels"] == [x for x in ARTIFACT_LABELS if x in ds.samples("artifacts", "train")[0].labels]
    params = json.loads((tmp_path / "ls" / "params" / "tasks.json").read_text())
    assert params[0]["data"]["text"].startswith("Sample train000")
    weird = export_project(str(_weird_dataset(tmp_path)), tmp_path / "w", task="artifacts")
    names = sorted(p.name for p in (tmp_path / "w" / "artifacts" / "images").iterdir())
    assert names == ["a_b_c_1-2.png", "a_b_c_1.png", "t1.png"] and weird.tasks == {"artifacts": 3}
    data = [t["data"] for t in json.loads((tmp_path / "w" / "artifacts" / "tasks.json").read_text())]
    assert {d["ptychobench_id"] for d in data} == {"a/b c#1", "a_b_c_1", "t1"}
    assert all("truth" not in json.dumps(d) for d in data)  # sample metadata (sim truth) never travels


def test_export_blind_sample_split_and_url_prefix(tmp_path, tiny_dataset):
    s = export_project(
        str(tiny_dataset),
        tmp_path / "b",
        blind=True,
        split="test",
        sample=4,
        seed=3,
        task="artifacts",
        image_url_prefix="http://127.0.0.1:8081/",
    )
    assert s.tasks == {"artifacts": 4}
    tasks = json.loads((tmp_path / "b" / "artifacts" / "tasks.json").read_text())
    assert all("dataset_labels" not in t["data"] and "predictions" not in t for t in tasks)
    assert all(t["data"]["split"] == "test" for t in tasks)
    assert tasks[0]["data"]["image"].startswith("http://127.0.0.1:8081/artifacts/images/")
    again = export_project(
        str(tiny_dataset), tmp_path / "b2", blind=True, split="test", sample=4, seed=3, task="artifacts"
    )
    ids = [t["data"]["ptychobench_id"] for t in tasks]
    assert ids == [
        t["data"]["ptychobench_id"] for t in json.loads((again.out / "artifacts" / "tasks.json").read_text())
    ]
    with pytest.raises(AnnotateError, match="must contain --out"):
        export_project(str(tiny_dataset), tmp_path / "c", document_root=tmp_path / "elsewhere")


def make_run(tmp_path: Path, dataset: Path) -> Path:
    """A run folder as the runner leaves it: config.yaml naming the dataset, one store."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"dataset: {dataset}\n")
    store = PredictionStore(run / "predictions.jsonl")
    ds = load_dataset(dataset)
    for i, s in enumerate(ds.samples("artifacts", "test")):
        store.append(
            make_record(
                ARTIFACTS,
                s,
                "artifacts/zero-shot",
                {},
                reply="<answer>[Blurring]</answer>",
                error="RuntimeError: boom" if i == 0 else None,
            )
        )
        store.append(make_record(ARTIFACTS, s, "artifacts/icl-k3", {}, reply="<answer>[Phase ramp]</answer>"))
    return run


def test_export_of_a_run_cell_pre_annotates_with_its_predictions(tmp_path, tiny_dataset):
    run = make_run(tmp_path, tiny_dataset)
    with pytest.raises(AnnotateError, match="artifacts/icl-k3, artifacts/zero-shot"):
        export_project(str(run), tmp_path / "x")
    s = export_project(str(run), tmp_path / "ls", cell="artifacts/zero-shot")
    assert s.tasks == {"artifacts": 6} and s.predictions == 5 and s.source["prediction_errors"] == 1
    tasks = json.loads((tmp_path / "ls" / "artifacts" / "tasks.json").read_text())
    with_pred = [t for t in tasks if "predictions" in t]
    assert len(with_pred) == 5
    assert with_pred[0]["data"]["run_cell"] == "artifacts/zero-shot" and with_pred[0]["data"]["dataset"] == "tiny"
    p = with_pred[0]["predictions"][0]
    assert p["model_version"] == "artifacts/zero-shot"
    assert p["result"] == [
        {"from_name": "artifacts", "to_name": "image", "type": "choices", "value": {"choices": ["Blurring"]}}
    ]
    blind = export_project(str(run), tmp_path / "bl", cell="artifacts/zero-shot", blind=True)
    assert blind.predictions == 0
    (run / "config.yaml").unlink()
    with pytest.raises(AnnotateError, match="pass --dataset"):
        export_project(str(run), tmp_path / "y", cell="artifacts/zero-shot")
    assert export_project(str(run), tmp_path / "y", cell="artifacts/zero-shot", dataset=str(tiny_dataset)).tasks


def test_images_folder_export_and_full_round_trip(tmp_path):
    recons = fixture_images(tmp_path / "my_recons")
    s = export_project(str(recons), tmp_path / "ls")
    assert s.source["kind"] == "images" and s.tasks == {"artifacts": 6}
    tasks = json.loads((tmp_path / "ls" / "artifacts" / "tasks.json").read_text())
    assert all("split" not in t["data"] and "dataset_labels" not in t["data"] for t in tasks)
    # an expert labels them (as Label Studio would export it) and the labels come back
    for i, t in enumerate(tasks):
        t["id"] = i + 1
        t["annotations"] = [
            {
                "id": i + 1,
                "completed_by": 7,
                "was_cancelled": False,
                "result": [
                    {
                        "from_name": "artifacts",
                        "to_name": "image",
                        "type": "choices",
                        "value": {"choices": [ARTIFACT_LABELS[i]]},
                    }
                ],
            }
        ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    r = import_export(export, tmp_path / "ds", images=tmp_path / "ls" / "artifacts" / "images", test_fraction=0.5)
    got = {s.id: s.labels for sp in ("train", "test") for s in r.dataset.samples("artifacts", sp)}
    assert got == {t["data"]["ptychobench_id"]: {ARTIFACT_LABELS[i]} for i, t in enumerate(tasks)}
    assert len(r.dataset.samples("artifacts", "test")) == 3


# --------------------------------------------------------------------------- agreement


def test_kappa_and_alpha_against_hand_computed_values():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    b = np.array([1, 0, 0, 0, 1, 0, 1, 0])
    # p_o = 6/8; p_e = (3/8)(3/8) + (5/8)(5/8) = 34/64; kappa = (48/64 - 34/64) / (30/64) = 14/30
    assert kappa(a, b) == pytest.approx(14 / 30)
    assert kappa(a, a) == 1.0 and kappa(np.zeros(4), np.zeros(4)) is None
    # Krippendorff's nominal alpha from the coincidence matrix: n = 16 pairable values (10 zeros,
    # 6 ones); 2 disagreeing units give 4 off-diagonal coincidences:
    # alpha = 1 - (n - 1) * 4 / (2 * n0 * n1) = 1 - 15 * 4 / 120 = 0.5
    n, n0, n1 = 16, 10, 6
    expected = 1 - (n - 1) * 4 / (2 * n0 * n1)
    assert expected == 0.5
    assert alpha(np.vstack([a, b]).astype(float)) == pytest.approx(expected)
    assert alpha(np.vstack([a, a]).astype(float)) == 1.0


def test_agreement_on_the_hand_made_export(tmp_path):
    result = measure(read_export(EXPORT))
    assert result.annotators == ["b.expert@aps.example", "user-1", "user-3"]
    assert result.n_samples == 4 and result.skipped == 1 and result.unannotated == 1
    pair = next(p for p in result.pairs if {p["a"], p["b"]} == {"user-1", "b.expert@aps.example"})
    # common samples ic_001, ncm_002, ncm_006 ("No obvious artifacts" unscored):
    # TP Grid, Halo, Singularity = 3; Blurring only by user-1 -> micro-F1 6/7
    assert pair["n"] == 3 and pair["micro_f1"] == pytest.approx(6 / 7)
    grid = next(r for r in result.per_label if r["label"] == "Grid artifacts")
    assert grid["ticks"] == 3 and grid["kappa"] == 1.0 and grid["alpha"] == 1.0
    assert -1 <= result.alpha <= 1
    # two experts who both saw nothing on every image: F1 undefined, not 0
    none = [
        {
            "id": 1,
            "data": {"image": "x.png"},
            "annotations": [
                {
                    "id": i,
                    "completed_by": i,
                    "result": [
                        {
                            "from_name": "artifacts",
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": ["No obvious artifacts"]},
                        }
                    ],
                }
                for i in (1, 2)
            ],
        }
    ]
    (tmp_path / "none.json").write_text(json.dumps(none))
    assert measure(read_export(tmp_path / "none.json")).pairs[0]["micro_f1"] is None


def test_agreement_against_a_dataset_scores_its_labels_with_experts_as_reference(tmp_path):
    images = fixture_images(tmp_path / "imgs")
    experts = import_export(EXPORT, tmp_path / "experts", images=images).dataset
    result = measure(read_export(EXPORT), experts, n_resamples=200)
    rows = {r["annotator"]: r for r in result.against}
    assert rows["consensus"]["micro_f1"] == 1.0 and rows["consensus"]["n"] == 4
    # user-1 ticked Grid+Blurring, Line+Noisy, Halo+Singularity; the dataset holds the consensus
    # Grid, Line, Halo+Singularity: precision 4/4, recall 4/6
    assert rows["user-1"]["precision"] == 1.0 and rows["user-1"]["recall"] == pytest.approx(4 / 6)
    assert result.unmatched == []


# --------------------------------------------------------------------------- CLI


def test_cli_round_trip_and_one_line_errors(tmp_path, tiny_dataset):
    res = runner.invoke(app, ["export", str(tiny_dataset), "--out", str(tmp_path / "ls"), "--task", "artifacts"])
    assert res.exit_code == 0, res.output
    assert "artifacts: 18 tasks" in res.output
    images = fixture_images(tmp_path / "imgs")
    res = runner.invoke(app, ["import", str(EXPORT), "--images", str(images), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "skipped task 104 (sample ncm_004) by user-1" in out and "unannotated task 105" in out
    assert "tie on sample ic_003: Noisy artifacts" in out
    res = runner.invoke(app, ["import", str(BAD_EXPORT), "--images", str(images), "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.count("error:") == 1 and "task 202" in res.output and "Moire fringes" in res.output
    assert not (tmp_path / "bad").exists()
    res = runner.invoke(
        app, ["agreement", str(EXPORT), "--against", str(tmp_path / "ds"), "--out", str(tmp_path / "agr")]
    )
    assert res.exit_code == 0, res.output
    md = (tmp_path / "agr" / "agreement.md").read_text()
    assert "| consensus | 4 | 1.000 | 1.000 | 1.000 |" in md
    data = json.loads((tmp_path / "agr" / "agreement.json").read_text())
    assert data["against_dataset"] == "labelstudio_export" and len(data["pairs"]) == 3
    res = runner.invoke(app, ["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "n")])
    assert res.exit_code == 2 and "no such dataset" in " ".join(res.output.split())
    res = runner.invoke(app, ["agreement", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "no such file" in " ".join(res.output.split())


def test_annotate_is_mounted_on_the_main_command():
    from ptychobench.cli import app as main_app

    res = runner.invoke(main_app, ["annotate", "--help"])
    assert res.exit_code == 0 and "export" in res.output and "agreement" in res.output
    for cmd in ("export", "import", "agreement"):
        res = runner.invoke(main_app, ["annotate", cmd, "--help"])
        assert res.exit_code == 0 and "Example" in res.output, cmd


def test_one_annotator_has_no_inter_annotator_figures_but_is_scored_against_the_dataset(tmp_path):
    export = tmp_path / "one.json"
    records = json.loads(EXPORT.read_text())
    for r in records:  # keep user-1 only
        r["annotations"] = [a for a in r["annotations"] if a["completed_by"] == 1]
    export.write_text(json.dumps(records))
    images = fixture_images(tmp_path / "imgs")
    experts = import_export(EXPORT, tmp_path / "experts", images=images).dataset
    result = measure(read_export(export), experts, n_resamples=200)
    assert result.annotators == ["user-1"] and result.pairs == [] and result.alpha is None
    assert all(r["kappa"] is None and r["alpha"] is None for r in result.per_label)
    assert [r["annotator"] for r in result.against] == ["user-1", "consensus"]


def test_a_bad_task_name_is_one_line_not_a_traceback(tmp_path, tiny_dataset):
    res = runner.invoke(app, ["export", str(tiny_dataset), "--out", str(tmp_path / "x"), "--task", "segmentation"])
    assert res.exit_code == 2 and "--task: unknown task 'segmentation'" in " ".join(res.output.split())
    res = runner.invoke(app, ["agreement", str(EXPORT), "--task", "nope"])
    assert res.exit_code == 2 and "unknown task 'nope'" in res.output
    assert not (tmp_path / "x").exists()
