"""Paper fidelity (issue 14): the authors' protocol one switch away.

The fixture ``tests/fixtures/released`` is written from the released format (both tasks,
foreign image prefixes, answers whose label order is not ours). The strict-parser cases
list what the authors' inference scripts return for each reply, worked out by reading their
code (``extract_labels`` in ``vlm_inference.py`` / ``llm_inference.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ptychobench.data.released import export_released, import_released
from ptychobench.tasks import ARTIFACTS, NO_ARTIFACTS, PARAMS

FIXTURE = Path(__file__).parent / "fixtures" / "released"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    src = root / "release"
    shutil.copytree(FIXTURE, src)
    return src, import_released(src, root / "ds", images=src / "images")


def _source(src: Path, task: str, split: str) -> list[dict]:
    return json.loads((src / task / f"{split}.json").read_text(encoding="utf-8"))


def test_released_prompt_is_the_released_user_text_verbatim(imported):
    src, ds = imported
    for task in (ARTIFACTS, PARAMS):
        released = task.with_modes(prompt="released")
        for split in ("train", "test"):
            for sample, rec in zip(ds.samples(task.name, split), _source(src, task.name, split)):
                msgs = released.render(sample)
                assert [m["role"] for m in msgs] == ["user"]  # no system turn, question asked once
                texts = [p["text"] for p in msgs[0]["content"] if p["type"] == "text"]
                assert texts == [rec["messages"][0]["content"][0]["text"]]
                if task is ARTIFACTS:
                    assert msgs[0]["content"][0] == {"type": "image", "image_path": str(sample.image)}
    # our default prompt differs: a system turn, and the params option list said once there
    ours = PARAMS.render(ds.samples("params", "test")[0])
    assert ours[0]["role"] == "system" and "A. Change number of batches to 1" not in ours[1]["content"][0]["text"]


def test_released_demos_answer_with_the_released_string(imported):
    src, ds = imported
    train = ds.samples("artifacts", "train")
    msgs = ARTIFACTS.with_modes(prompt="released").render(ds.samples("artifacts", "test")[0], train[:3])
    answers = [m["content"][0]["text"] for m in msgs if m["role"] == "assistant"]
    assert answers == [r["messages"][1]["content"][0]["text"] for r in _source(src, "artifacts", "train")[:3]]
    assert answers[0] == "<answer>[Blurring, Grid artifacts]</answer>"  # their order, not ours
    assert ARTIFACTS.render(ds.samples("artifacts", "test")[0], train[:1])[2]["content"][0]["text"] == \
        "<answer>[Grid artifacts, Blurring]</answer>"
    p = PARAMS.with_modes(prompt="released").render(ds.samples("params", "test")[0], ds.samples("params", "train"))
    assert [m["content"][0]["text"] for m in p if m["role"] == "assistant"] == \
        ["<answer>K, G, J</answer>", "<answer>L</answer>", "<answer>[J, T]</answer>"]


def test_export_is_byte_identical_in_messages_and_image_paths(imported, tmp_path):
    src, ds = imported
    out = export_released(ds, tmp_path / "out")
    for task in ("artifacts", "params"):
        for split in ("train", "test"):
            before = _source(src, task, split)
            after = json.loads((out / task / f"{split}.json").read_text(encoding="utf-8"))
            assert [json.dumps(r["messages"]) for r in after] == [json.dumps(r["messages"]) for r in before]
            # metadata as read; a duplicated sample_id gains our id so a re-import keeps it apart
            assert [{k: v for k, v in r["metadata"].items() if k != "ptychobench_id"} for r in after] == \
                [r["metadata"] for r in before]
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == sorted(p.name for p in (src / "images").iterdir())  # original file names
    for p in (out / "images").iterdir():
        assert p.read_bytes() == (src / "images" / p.name).read_bytes()


def test_a_relabelled_sample_exports_its_new_answer(imported):
    from dataclasses import replace

    from ptychobench.data.released import released_record

    _, ds = imported
    s = ds.samples("params", "train")[0]
    assert released_record(PARAMS, s, None)["messages"][1]["content"][0]["text"] == "<answer>K, G, J</answer>"
    changed = replace(s, labels=frozenset({"G"}))
    assert released_record(PARAMS, changed, None)["messages"][1]["content"][0]["text"] == "<answer>G</answer>"


# (reply, what the authors' extract_labels returns), read from their code: re.search of
# <answer>\[(.*?)\]</answer> (artifacts) or <answer>\[?(.*?)\]?</answer> (params), no
# re.DOTALL, case-sensitive; group split on ",", items stripped, empty ones and
# "No obvious artifacts" dropped; unknown strings kept (each becomes a label of its own).
STRICT_ARTIFACTS = [
    ("<answer>[Grid artifacts, Blurring]</answer>", ["Grid artifacts", "Blurring"]),
    ("Looking closely... <answer>[Phase ramp]</answer>", ["Phase ramp"]),
    ("<answer>Grid artifacts</answer>", []),  # brackets required
    ("<ANSWER>[Grid artifacts]</ANSWER>", []),  # case-sensitive tag
    ("<answer>[grid artifacts, Phase ramp]</answer>", ["grid artifacts", "Phase ramp"]),
    ("<answer>[Blurring]</answer> or maybe <answer>[Halo artifacts]</answer>", ["Blurring"]),  # first tag
    ("<answer>[\nBlurring]</answer> <answer>[Halo artifacts]</answer>", ["Halo artifacts"]),  # '.' skips newlines
    ("<answer>[No obvious artifacts]</answer>", []),
    ("<answer>[]</answer>", []),
    ("<answer>[Blurring, , Low contrast ]</answer>", ["Blurring", "Low contrast"]),
    ("<answer>[Halo artifacts]]</answer>", ["Halo artifacts]"]),
    ("<answer>[Grid artifacts, Blurring", []),  # no closing tag
    ("There are grid artifacts and blurring.", []),  # no free-text fallback
]
STRICT_PARAMS = [
    ("<answer>G, J, K</answer>", ["G", "J", "K"]),
    ("<answer>[G, J]</answer>", ["G", "J"]),
    ("<answer>g, k</answer>", ["g", "k"]),
    ("<answer>G. Enable position correction, K</answer>", ["G. Enable position correction", "K"]),
    ("<answer>G J K</answer>", ["G J K"]),
    ("<answer>L</answer> <answer>K</answer>", ["L"]),
    ("I recommend G and K", []),
    ("<answer></answer>", []),
]


@pytest.mark.parametrize("task, reply, theirs", [(ARTIFACTS, r, t) for r, t in STRICT_ARTIFACTS]
                         + [(PARAMS, r, t) for r, t in STRICT_PARAMS])
def test_strict_parse_reproduces_the_authors_parser(task, reply, theirs):
    r = task.with_modes(parse="strict").parse(reply)
    ours = [x for x in task.labels if x in r.labels and x != NO_ARTIFACTS] + list(r.extra)
    assert sorted(ours) == sorted(theirs), reply
    assert set(r.extra).isdisjoint(task.labels)


def test_tolerant_parse_skips_denials_and_reads_every_letter():
    cases = {
        "There are no grid artifacts.": set(),
        "There are no grid artifacts, halos or blurring.": set(),
        "The image shows grid artifacts but no blurring.": {"Grid artifacts"},
        "Grid artifacts are absent; there is a strong phase ramp.": {"Phase ramp"},
        "Without any halo artifacts, the main problem is low contrast.": {"Low contrast"},
        "There is no clear structure.": {"No clear structure"},
        "I don't think there is blurring here.": set(),
        "No obvious signs of singularities or noise.": set(),
        "Blurring is visible.": {"Blurring"},
    }
    for reply, want in cases.items():
        assert ARTIFACTS.parse(reply).labels == want, reply
    cases = {
        "I recommend G and K": {"G", "K"},
        "I recommend G, J and K.": {"G", "J", "K"},
        "Options I and K.": {"I", "K"},
        "A change is needed: A, G": {"A", "G"},
        "I would not enable position correction; increase the number of iterations.": {"K"},
        "Do not use G. Use K.": {"K"},
    }
    for reply, want in cases.items():
        assert PARAMS.parse(reply).labels == want, reply
    assert not PARAMS.parse("I am not sure what to do here.").ok
