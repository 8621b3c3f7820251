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
    assert (
        ARTIFACTS.render(ds.samples("artifacts", "test")[0], train[:1])[2]["content"][0]["text"]
        == "<answer>[Grid artifacts, Blurring]</answer>"
    )
    p = PARAMS.with_modes(prompt="released").render(ds.samples("params", "test")[0], ds.samples("params", "train"))
    assert [m["content"][0]["text"] for m in p if m["role"] == "assistant"] == [
        "<answer>K, G, J</answer>",
        "<answer>L</answer>",
        "<answer>[J, T]</answer>",
    ]


def test_export_is_byte_identical_in_messages_and_image_paths(imported, tmp_path):
    src, ds = imported
    out = export_released(ds, tmp_path / "out")
    for task in ("artifacts", "params"):
        for split in ("train", "test"):
            before = _source(src, task, split)
            after = json.loads((out / task / f"{split}.json").read_text(encoding="utf-8"))
            assert [json.dumps(r["messages"]) for r in after] == [json.dumps(r["messages"]) for r in before]
            # metadata as read; a duplicated sample_id gains our id so a re-import keeps it apart
            assert [{k: v for k, v in r["metadata"].items() if k != "ptychobench_id"} for r in after] == [
                r["metadata"] for r in before
            ]
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


# (reply, what the authors' bootstrap scorer's parse_answer_string marks), read from their
# code: tags and brackets removed anywhere, the whole reply split at ",", exact names only
# (the 12 artifact classes, "No obvious artifacts" included; letters A..X), others ignored.
BOOTSTRAP_CASES = [
    (ARTIFACTS, "<answer>[Grid artifacts, Blurring]</answer>", ["Grid artifacts", "Blurring"]),
    (ARTIFACTS, "<answer>[No obvious artifacts]</answer>", [NO_ARTIFACTS]),
    (ARTIFACTS, "I see: <answer>[Grid artifacts, Blurring]</answer>", ["Blurring"]),  # text joins item 1
    (ARTIFACTS, "<answer>Phase ramp, Halo artifacts]", ["Phase ramp", "Halo artifacts"]),
    (ARTIFACTS, "<answer>[grid artifacts]</answer>", []),
    (PARAMS, "<answer>G, J, K</answer>", ["G", "J", "K"]),
    (PARAMS, "<answer>[G, J]</answer> because K", ["G"]),  # 'J because K' is no letter
    (PARAMS, "G and K", []),
]


@pytest.mark.parametrize("task, reply, theirs", BOOTSTRAP_CASES)
def test_bootstrap_parse_reproduces_the_authors_bootstrap_scorer(task, reply, theirs):
    assert task.parse(reply, "bootstrap").labels == frozenset(theirs), reply


@pytest.mark.parametrize(
    "task, reply, theirs", [(ARTIFACTS, r, t) for r, t in STRICT_ARTIFACTS] + [(PARAMS, r, t) for r, t in STRICT_PARAMS]
)
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


# ----------------------------------------------------------------- scoring both ways
def test_released_scores_binarise_over_the_strings_seen():
    from ptychobench.eval.metrics import released_scores

    # union: Blurring, Grid artifacts, grid -> micro tp 1, fp 1, fn 1; macro (0 + 1 + 0) / 3
    s = released_scores([["Grid artifacts"], ["Blurring"]], [["Grid artifacts", "grid"], []])
    assert s["micro_precision"] == pytest.approx(0.5) and s["micro_recall"] == pytest.approx(0.5)
    assert s["micro_f1"] == pytest.approx(0.5) and s["macro_f1"] == pytest.approx(1 / 3)
    assert released_scores([[]], [[]])["micro_f1"] == 0.0


def test_score_variants_present_labels_no_artifacts_class_and_bootstrap_mean_std():
    from ptychobench.eval.metrics import score

    gold = [
        frozenset({"Grid artifacts"}),
        frozenset({NO_ARTIFACTS}),
        frozenset({"Blurring"}),
        frozenset({NO_ARTIFACTS}),
    ]
    pred = [frozenset({"Grid artifacts"}), frozenset({NO_ARTIFACTS}), frozenset(), frozenset({"Phase ramp"})]
    s = score(gold, pred, ARTIFACTS.scored_labels, all_labels=ARTIFACTS.labels, n_resamples=2000)
    # fixed space: tp 1, fp 1, fn 1 -> micro 0.5; macro over 11 labels: only Grid scores 1
    assert s.micro_f1 == pytest.approx(0.5) and s.macro_f1 == pytest.approx(1 / 11)
    # present in gold: Grid (F1 1) and Blurring (F1 0) -> 0.5
    assert s.present_labels == 2 and s.macro_f1_present == pytest.approx(0.5)
    # "No obvious artifacts" as a class: one more tp, one more fn -> 2 tp, 1 fp, 2 fn -> 4/7
    assert s.micro_f1_with_none == pytest.approx(4 / 7)
    assert s.micro_f1_ci[0] <= s.micro_f1_boot_mean <= s.micro_f1_ci[1] and s.micro_f1_boot_std > 0
    assert s.micro_f1_with_none_boot_mean is not None
    # the parameter task scores every label: no such variant
    assert score([frozenset({"G"})], [frozenset({"G"})], PARAMS.scored_labels, ci=False).micro_f1_with_none is None


def test_authors_cohens_d_is_mean_over_std_of_the_bootstrap_differences():
    from ptychobench.eval.metrics import paired_bootstrap

    gold = [frozenset({"G", "K"})] * 6 + [frozenset({"L"})] * 6
    a = [frozenset({"G", "K"})] * 5 + [frozenset()] + [frozenset({"L"})] * 6
    b = [frozenset({"G"})] * 6 + [frozenset({"L", "A"})] * 6
    c = paired_bootstrap(gold, a, b, PARAMS.scored_labels, n_resamples=3000)
    assert c.cohens_d_authors == pytest.approx(c.diff_boot_mean / c.diff_boot_std)
    assert c.diff_boot_mean > 0 and c.cohens_d_authors > 0 and 0 <= c.p_value_authors <= 1
    # their d grows with the test set (a z-score of the difference), ours (d_z) does not
    c2 = paired_bootstrap(gold * 4, a * 4, b * 4, PARAMS.scored_labels, n_resamples=3000)
    assert c2.cohens_d_authors > 1.5 * c.cohens_d_authors
    assert c2.cohens_d == pytest.approx(c.cohens_d, rel=0.25)


# ----------------------------------------------------------------- config and grid
def test_prompt_and_parse_are_checked_and_key_the_cells(monkeypatch):
    from ptychobench.errors import ConfigError
    from ptychobench.run import expand, parse_config

    base = {"name": "x", "dataset": "d"}
    for key, bad in (("prompt", "authors"), ("parse", "lenient")):
        with pytest.raises(ConfigError) as e:
            parse_config({**base, "experiments": [{"task": "params", "model": "hf:m", key: bad}]}, "my.yaml")
        assert "my.yaml: experiments[0]" in str(e.value) and f"{key} must be one of" in str(e.value)
    cfg = parse_config(
        {
            **base,
            "experiments": [
                {"task": "params", "model": "hf:m", "strategies": ["zero-shot", "icl"], "k": [1]},
                {
                    "task": "params",
                    "model": "hf:m",
                    "name": "m-exact",
                    "prompt": "released",
                    "parse": "strict",
                    "strategies": ["zero-shot", "icl"],
                    "k": [1],
                },
            ],
        },
        "x.yaml",
    )
    names = [c.config for c in expand(cfg)]
    assert "params/hf:m/zero-shot/-/k0/seed0/nall" in names  # the default keeps its old key
    assert "params/m-exact/icl/random/k1/seed0/nall/prompt-released/parse-strict" in names


def test_requires_env_leaves_an_experiment_out_until_the_key_is_set(monkeypatch):
    from ptychobench.run import parse_config

    data = {
        "name": "x",
        "dataset": "d",
        "experiments": [
            {"task": "params", "model": "hf:m"},
            {"task": "params", "model": "gpt-4o", "requires_env": ["PTYCHOBENCH_TEST_KEY"]},
        ],
    }
    monkeypatch.delenv("PTYCHOBENCH_TEST_KEY", raising=False)
    cfg = parse_config(data, "x.yaml")
    assert [e.model for e in cfg.experiments] == ["hf:m"] and "PTYCHOBENCH_TEST_KEY" in cfg.skipped[0][1]
    monkeypatch.setenv("PTYCHOBENCH_TEST_KEY", "set")
    assert [e.model for e in parse_config(data, "x.yaml").experiments] == ["hf:m", "gpt-4o"]


def test_sampling_runs_base_zero_shot_once_per_seed():
    from ptychobench.run import expand, parse_config

    def zero_shots(decoding):
        cfg = parse_config(
            {
                "name": "x",
                "dataset": "d",
                "seeds": [0, 1, 2],
                "decoding": decoding,
                "experiments": [{"task": "params", "model": "hf:m"}],
            },
            "x.yaml",
        )
        return [c.seed for c in expand(cfg) if c.strategy == "zero-shot"]

    assert zero_shots("greedy") == [0] and zero_shots("paper") == [0, 1, 2]


def test_paper_configs_fine_tune_all_four_models():
    from ptychobench.run import load_config

    for name in ("paper", "paper-exact"):
        cfg = load_config(name)
        tuned = {e.model: e.sft for e in cfg.experiments if "sft" in e.strategies}
        assert set(tuned) == {"llama-3.2-11b-vision", "llama-3.2-90b-vision", "llama-3.1-8b", "llama-3.1-70b"}
        assert tuned["llama-3.2-90b-vision"]["quantize"] == tuned["llama-3.1-70b"]["quantize"] == "4bit"
    exact = load_config("paper-exact")
    assert {(e.prompt, e.parse) for e in exact.experiments} == {("released", "strict")}


# ----------------------------------------------------------------- fine-tuning recipe
def test_paper_profile_is_the_authors_recipe():
    from ptychobench.errors import ConfigError
    from ptychobench.strategies.sft.recipe import recipe_for

    vlm, llm = recipe_for("paper", vision=True), recipe_for("paper", vision=False)
    assert vlm.train_vision and vlm.loss_on == "sequence" and vlm.batch_size * vlm.grad_accum == 8
    assert llm.loss_on == "sequence" and llm.batch_size * llm.grad_accum == 32 and llm.optim == "auto"
    assert recipe_for("gpu", vision=True).train_vision and recipe_for("gpu", vision=True).loss_on == "answer"
    with pytest.raises(ConfigError, match="loss_on 'prompt'"):
        recipe_for("gpu", vision=False, loss_on="prompt")


def test_whole_sequence_labels_skip_padding_and_image_tokens():
    import torch

    from ptychobench.strategies.sft.examples import whole_sequence_labels

    class Proc:
        image_token_id = 7

    ids = torch.tensor([[5, 7, 9, 10, 0], [5, 9, 11, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    assert whole_sequence_labels(ids, mask, Proc()).tolist() == [[5, -100, 9, 10, -100], [5, 9, 11, -100, -100]]


def test_released_training_conversations_answer_with_the_released_string(imported):
    from ptychobench.strategies.sft.examples import training_conversations

    _, ds = imported
    train = ds.samples("params", "train")
    ours = training_conversations("params", train)
    theirs = training_conversations("params", train, prompt="released")
    assert ours[0][-1]["content"][0]["text"] == "<answer>G, J, K</answer>"
    assert theirs[0][-1]["content"][0]["text"] == "<answer>K, G, J</answer>"
    assert theirs[0][0]["role"] == "user" and ours[0][0]["role"] == "system"


# ----------------------------------------------------------------- a run, both protocols, one report
class _Fake:
    """A backend that answers every artifact query the same way and remembers the prompts."""

    def __init__(self):
        self.seen = []

    def fingerprint(self):
        return {"name": "fake"}

    def generate(self, convs, config):
        from ptychobench.models.base import Generation

        self.seen += [(c, config.seed) for c in convs]
        return [
            Generation(text="Grid artifacts are visible. <answer>[grid artifacts, Phase ramp]</answer>") for _ in convs
        ]


def test_a_run_with_both_protocols_side_by_side(imported, tmp_path, monkeypatch):
    import ptychobench.models as models
    from ptychobench.eval.store import read_run
    from ptychobench.report import write_report
    from ptychobench.run import Runner, parse_config

    _, ds = imported
    fake = _Fake()
    monkeypatch.setattr(models, "load_backend", lambda *a, **k: fake)
    exp = {
        "task": "artifacts",
        "model": "hf:fake",
        "strategies": ["zero-shot", "icl"],
        "selectors": ["random", "sample-type"],
        "k": [1],
    }
    cfg = parse_config(
        {
            "name": "both",
            "dataset": str(ds.root),
            "decoding": "paper",
            "seeds": [0, 1],
            "experiments": [
                {**exp, "name": "ours"},
                {**exp, "name": "theirs", "prompt": "released", "parse": "strict"},
            ],
        },
        "b.yaml",
    )
    Runner(cfg, tmp_path / "run").run()
    recs = read_run(tmp_path / "run")
    ours = [r for r in recs if r["config"].startswith("artifacts/ours/")]
    theirs = [r for r in recs if r["config"].startswith("artifacts/theirs/")]
    assert ours and theirs and all(r["config"].endswith("/prompt-released/parse-strict") for r in theirs)
    assert {tuple(r["labels"]) for r in ours} == {("Grid artifacts", "Phase ramp")}  # tolerant
    assert {tuple(r["labels"]) for r in theirs} == {("Phase ramp",)}  # strict: "grid artifacts" is no label
    assert {(r["components"]["prompt"], r["components"]["parse"]) for r in theirs} == {("released", "strict")}
    assert {r["components"]["decoding"]["seed"] for r in theirs} == {0, 1}  # one sampling seed per seed
    released_prompts = [c for c, _ in fake.seen if c[0]["role"] != "system"]
    assert released_prompts
    assert all(c[-1]["content"][1]["text"].startswith("You are an expert") for c in released_prompts)
    out = write_report(tmp_path / "run")
    md = out["md"].read_text()
    assert "The paper's tables" in md and "in-context learning (model x selector x k)" in md
    assert "sample-type (SSFS)" in md and "theirs: micro-F1" in md and "Cohen's d (theirs" in md
    assert "theirs: bootstrap scorer mean ± std" in md


def test_collator_puts_the_loss_where_the_recipe_says(imported):
    from transformers import AutoTokenizer

    from ptychobench.models.assets import smollm2_transformers_dir
    from ptychobench.strategies.sft.examples import Collator, as_dataset, training_conversations

    tok = AutoTokenizer.from_pretrained(smollm2_transformers_dir())
    _, ds = imported
    rows = list(as_dataset(training_conversations("params", ds.samples("params", "train"), prompt="released")))
    answer = Collator(tok, 4096, "answer")(rows)
    whole = Collator(tok, 4096, "sequence")(rows)
    labelled = (whole["labels"] != -100).sum(1)
    assert labelled.tolist() == whole["attention_mask"].sum(1).tolist()  # every real token, padding not
    assert ((answer["labels"] != -100).sum(1) < labelled / 10).all()  # the answer is a sliver of it
    first = tok.decode(answer["labels"][0][answer["labels"][0] != -100])
    assert first.startswith("<answer>K, G, J</answer>")


def test_embedded_default_shows_each_strategy_with_fixed_training_steps():
    """The default is cut to fit its time target (issue 12); what it must keep: the shipped
    dataset, payoff on, every paper strategy on the parameter task, both fine-tuned
    strategies on the artifact task, the baselines, and LoRA runs sized by epochs (not by
    the wall clock alone, which would make the result depend on the machine)."""
    from ptychobench.run import expand, load_config

    cfg = load_config(None)
    assert cfg.name == "default" and cfg.dataset == "sim-v2" and cfg.payoff
    cells = expand(cfg)
    by_task: dict[str, set[str]] = {}
    for c in cells:
        by_task.setdefault(c.task, set()).add(c.strategy)
    assert {"zero-shot", "icl", "sft", "sft+icl"} <= by_task["params"]
    assert {"sft", "sft+icl"} <= by_task["artifacts"]
    assert {"text-probe", "knn-vote", "type-only"} <= by_task["params"]
    assert {"vision-probe", "knn-vote", "type-only"} <= by_task["artifacts"]
    # context-aware demos, and random ones only beside a fine-tuned model (the paper's
    # contextual interference; session 10)
    assert all(c.selector in (None, "knn") or (c.selector == "random" and c.strategy == "sft+icl") for c in cells)
    for e in cfg.experiments:
        if "sft" in e.strategies:
            assert isinstance(e.sft.get("epochs"), (int, float)) and e.sft["epochs"] > 0
