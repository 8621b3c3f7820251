from ptychobench.data import Sample
from ptychobench.tasks import ARTIFACT_LABELS, ARTIFACTS, PARAM_OPTIONS, PARAMS


def test_label_spaces_are_the_papers():
    assert len(ARTIFACT_LABELS) == 12 and ARTIFACT_LABELS[0] == "Grid artifacts"
    assert ARTIFACT_LABELS[-1] == "No obvious artifacts" and ARTIFACT_LABELS[-2] == "Blurring"
    assert list(PARAM_OPTIONS) == [chr(c) for c in range(ord("A"), ord("X") + 1)]
    assert PARAM_OPTIONS["L"] == "No changes needed"
    assert PARAM_OPTIONS["X"] == "Use sparse batch selection scheme"
    assert "No obvious artifacts" not in ARTIFACTS.scored_labels and len(ARTIFACTS.scored_labels) == 11
    assert len(PARAMS.scored_labels) == 24


def test_targets_use_the_released_answer_format():
    assert ARTIFACTS.target({"Blurring", "Grid artifacts"}) == "<answer>[Grid artifacts, Blurring]</answer>"
    assert PARAMS.target({"K", "G", "J"}) == "<answer>G, J, K</answer>"


def test_render_puts_demos_before_the_query_with_their_images(tmp_path):
    img = tmp_path / "a.png"
    q = Sample("q", "test", "artifacts", "ic", "", img, frozenset())
    d = Sample("d", "train", "artifacts", "ic", "", tmp_path / "d.png", frozenset({"Blurring"}))
    msgs = ARTIFACTS.render(q, [d])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"][0] == {"type": "image", "image_path": str(tmp_path / "d.png")}
    assert msgs[2]["content"][0]["text"] == "<answer>[Blurring]</answer>"
    assert any(p.get("image_path") == str(img) for p in msgs[3]["content"])


def test_artifact_parsing_is_tolerant():
    cases = {
        "<answer>[Grid artifacts, Blurring]</answer>": {"Grid artifacts", "Blurring"},
        "<ANSWER>  [grid Artifacts ,blurring ]": {"Grid artifacts", "Blurring"},
        "<answer>Phase ramp; singularities</answer>": {"Phase ramp", "Singularity artifacts"},
        "I see <answer>[Noisy artifact]</answer> and more": {"Noisy artifacts"},
        "<answer>[No obvious artifacts]</answer>": {"No obvious artifacts"},
        "There is a Halo artifacts region and Low contrast.": {"Halo artifacts", "Low contrast"},
    }
    for reply, want in cases.items():
        r = ARTIFACTS.parse(reply)
        assert r.labels == frozenset(want), reply
        assert r.ok


def test_param_parsing_accepts_letters_or_names():
    cases = {
        "<answer>G, J, K</answer>": {"G", "J", "K"},
        "<answer>g,j</answer>": {"G", "J"},
        "<answer>[G] [K]</answer>": {"G", "K"},
        "<answer>G. Enable position correction, K) Increase the number of iterations": {"G", "K"},
        "<answer>Enable position correction and Use multislice model</answer>": {"G", "W"},
        "<answer>G J K</answer>": {"G", "J", "K"},
        "I recommend: Increase the number of iterations.": {"K"},
    }
    for reply, want in cases.items():
        assert PARAMS.parse(reply).labels == frozenset(want), reply


def test_unparseable_reply_is_a_parse_failure_not_a_skip():
    for reply in ("", "I am not sure what to do here.", "<answer></answer>", None):
        r = PARAMS.parse(reply)
        assert r.labels == frozenset() and not r.ok
    assert not ARTIFACTS.parse("The image looks like a cat.").ok
