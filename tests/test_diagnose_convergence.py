"""The loss curve decides "more iterations" (K) over the advisor (issue 25: the P25 scan at
20 epochs got "No changes needed" while its loss still fell 8.2% over the last quarter).

A ``--params`` file whose loss still falls by the tuned fall or more over the last quarter
of its iterations gets K, without "No changes needed", and a note that the measurement
overrode the advisor; a converged one keeps the advisor's answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("efficientnet_lite_pytorch")

#: the P25 scan's shape: 20 iterations, still falling about 8% over the last 5
FALLING = [100.0 * (i + 1) ** -0.35 for i in range(20)]
#: converged: the last quarter changes by well under 1%
CONVERGED = [1.0 + 9.0 * np.exp(-i / 2.0) for i in range(20)]


def _params(path: Path, loss: list[float]) -> Path:
    path.write_text(
        "n_epochs: 20\nn_probe_modes: 2\nbatch_size: 40\nn_positions: 200\nnear_field: true\n"
        f"loss: [{', '.join(f'{v:.6g}' for v in loss)}]\n"
    )
    return path


def _clean(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    phase = 0.8 * ((yy - 32) ** 2 + (xx - 30) ** 2 < 200) + 0.02 * rng.standard_normal((64, 64))
    path = tmp_path / "recon.npy"
    np.save(path, np.exp(1j * phase).astype(np.complex64))
    return path


def test_the_rule_reads_the_last_quarter() -> None:
    from ptychobench.diagnose.advice import loss_rule
    from ptychobench.diagnose.convergence import STILL_FALLING, still_falling
    from ptychobench.sim.text import _trend, recent_drop

    drop, q = recent_drop(FALLING)
    assert q == 5 and drop > STILL_FALLING > recent_drop(CONVERGED)[0]
    assert f"{100 * drop:.1f}% over the last 5 iterations" in _trend(FALLING)  # the number the text prints
    why = still_falling({"loss": FALLING})
    assert why is not None and f"{100 * drop:.1f}% over the last 5 of 20 iterations" in why
    assert still_falling({"loss": CONVERGED}) is None and still_falling({}) is None
    assert still_falling({"loss": FALLING[:3]}) is None  # too few iterations to judge
    assert loss_rule({"L"}, why, False, "p 0.11")[0] == {"K"}
    assert loss_rule({"J", "L"}, why, False, "p 0.11")[0] == {"J", "K"}
    assert loss_rule({"K"}, why, False, "p 0.5") == ({"K"}, None)  # the advisor agreed: nothing to override
    assert loss_rule({"L"}, None, False, "p 0.11") == ({"L"}, None)
    assert loss_rule({"L"}, why, True, "p 0.11") == ({"L"}, None)  # K cannot apply


def test_falling_loss_gets_k_with_a_note_and_converged_does_not(
    tmp_path: Path, tiny_dataset: Path, diagnose_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``--params``, with a probe advisor that on its own answers "No changes
    needed" (every option measured harmful in training): a converged loss keeps that
    answer; a loss that still falls gets K instead, with the note, on a clean image too."""
    import dataclasses

    from ptychobench.cli import app
    from ptychobench.diagnose import advice

    adv = advice.load_probe_advisor("text-probe", str(tiny_dataset))
    says_l = dataclasses.replace(adv, gains={lab: (-0.5, -0.5) for lab in adv.labels})
    text = "Reconstruction log, sample recon.npy"
    for clean in (False, True):
        conv = says_l.advise(text, advice.load_params(_params(tmp_path / "c.yaml", CONVERGED)), clean)
        assert conv.chosen == ["L"] and not any("overrides the advisor" in n for n in conv.notes)
        fall = says_l.advise(text, advice.load_params(_params(tmp_path / "f.yaml", FALLING)), clean)
        assert fall.chosen == ["K"], (fall.chosen, fall.notes)
        notes = [n for n in fall.notes if n.startswith("K, more iterations")]
        assert len(notes) == 1 and "overrides the advisor (text-probe probability" in notes[0]
        assert "still falling" in notes[0] and "'No changes needed' withdrawn" in notes[0]
        k = next(o for o in fall.options if o.letter == "K")
        assert k.chosen and k.evidence[0].startswith("advised by the measurement: the loss is still falling")
    with monkeypatch.context() as mp:  # undone before the fixture clears the advisor cache
        mp.setattr(advice, "get_advisor", lambda *a, **kw: says_l)
        recon = _clean(tmp_path)
        for name, loss in (("falling", FALLING), ("converged", CONVERGED)):
            args = ["diagnose", str(recon), "--params", str(_params(tmp_path / f"{name}.yaml", loss))]
            res = CliRunner().invoke(app, [*args, "--dataset", str(tiny_dataset), "--json"])
            assert res.exit_code == 0, res.output
            got = json.loads(res.stdout)[0]["advice"]
            chosen = [o["letter"] for o in got["options"] if o["chosen"]]
            assert chosen == (["K"] if name == "falling" else ["L"]), got["notes"]
        falling = ["diagnose", str(recon), "--params", str(tmp_path / "falling.yaml"), "--dataset", str(tiny_dataset)]
        res = CliRunner().invoke(app, falling)
        assert res.exit_code == 0 and "note: K, more iterations" in " ".join(res.output.split()), res.output


def test_model_advisor_gets_the_rule_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ptychobench import models as backends
    from ptychobench.diagnose.advice import ModelAdvisor, load_params
    from ptychobench.models import Generation

    class Fake:
        reply = "<answer>L</answer>"

        def generate(self, batch, _):
            return [Generation(text=self.reply) for _ in batch]

    fake = Fake()
    monkeypatch.setattr(backends, "load_backend", lambda model, adapter=None, **kw: fake)
    falling = load_params(_params(tmp_path / "f.yaml", FALLING))
    adv = ModelAdvisor("some-llm").advise("Reconstruction log ...", falling)
    assert adv.chosen == ["K"] and any("some-llm did not name it" in n for n in adv.notes)
    k = next(o for o in adv.options if o.letter == "K")
    assert k.evidence[0].startswith("advised by the measurement: the loss is still falling")
    converged = load_params(_params(tmp_path / "c.yaml", CONVERGED))
    assert ModelAdvisor("some-llm").advise("Reconstruction log ...", converged).chosen == ["L"]
    fake.reply = "<answer>J</answer>"  # on a clean image the rule answers L, and says so
    clean = ModelAdvisor("some-llm").advise("Reconstruction log ...", converged, clean=True)
    assert clean.chosen == ["L"]
    assert next(o for o in clean.options if o.letter == "L").evidence[0].startswith("not named by some-llm")


def test_threshold_is_the_train_splits_tuned_one() -> None:
    """The shipped threshold is what the advisor's threshold rule gives on sim-v2's train
    texts (benchmarks/loss_rule.py prints the table), and the rule does sort them: K was
    verified far more often where it fires than where it does not."""
    from ptychobench.diagnose.advice import own_train_samples
    from ptychobench.diagnose.convergence import STILL_FALLING, train_falls, tuned_threshold

    drops, k = train_falls(own_train_samples("sim-v2"))
    assert len(drops) == 91 and tuned_threshold(drops, k) == pytest.approx(STILL_FALLING)
    fire = drops >= STILL_FALLING
    assert k[fire].mean() > 2 * k.mean() > 4 * k[~fire].mean()
