import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptychobench.data import DatasetError
from ptychobench.data.released import export_released, import_released
from ptychobench.tasks import PARAM_OPTIONS

OPTIONS = "\n".join(f"{k}. {v}" for k, v in PARAM_OPTIONS.items())
ART_Q = "Identify the artifacts in this ptychographic reconstruction. Answer as <answer>[...]</answer>."


def _visual(name, answer, stype, sid):
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": ART_Q},
                    {"type": "image", "image_path": f"/data/upload/beamline/2024/{name}"},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "metadata": {
            "sample_type": stype,
            "sample_id": sid,
            "beam_type": "hard X-ray",
            "instrument": "Velociprobe",
            "reconstruction_parameters": {"n_iter": 200, "batch_size": 96},
        },
    }


def _text(desc, answer, stype, sid):
    return {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": f"{desc}\nWhich changes should be made?\n{OPTIONS}"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "metadata": {"sample_type": stype, "sample_id": sid},
    }


def make_release(root: Path) -> Path:
    imgs = root / "imgs" / "nested"
    imgs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(imgs / f"img_{i}.png")
    (root / "visual").mkdir()
    (root / "text").mkdir()
    (root / "visual/train.json").write_text(
        json.dumps(
            [
                _visual("img_0.png", "<answer>[Grid artifacts, Blurring]</answer>", "integrated circuit", "IC-1"),
                _visual("img_1.png", "<answer>[No obvious artifacts]</answer>", "battery", "NCM-7"),
                _visual("img_2.png", "<answer>[Phase ramp]</answer>", "battery", "NCM-7"),  # same sample, 2nd image
            ]
        )
    )
    (root / "visual/test.json").write_text(
        json.dumps(
            [
                _visual("img_3.png", "<answer>[Halo artifacts, Noisy artifacts]</answer>", "cell", "BIO-2"),
                _visual("img_4.png", "<answer>[Low contrast]</answer>", "integrated circuit", "IC-9"),
            ]
        )
    )
    (root / "text/train.json").write_text(
        json.dumps(
            [
                _text(
                    "Velociprobe, IC, 500 positions; probe looks blurry.",
                    "<answer>G, J, K</answer>",
                    "integrated circuit",
                    "T1",
                ),
                _text("Zone plate, cell; converged well.", "<answer>L</answer>", "cell", "T2"),
            ]
        )
    )
    (root / "text/test.json").write_text(
        json.dumps(
            [
                _text("Battery particle; grid pattern visible.", "<answer>A, T</answer>", "battery", "T3"),
            ]
        )
    )
    return root


def _snapshot(ds):
    return {
        k: [
            (s.id, s.sample_type, s.text, sorted(s.labels), s.metadata, s.image.read_bytes() if s.image else None)
            for s in v
        ]
        for k, v in ds.splits.items()
    }


def test_import_export_reimport_is_identical(tmp_path):
    src = make_release(tmp_path / "release")
    ds = import_released(src, tmp_path / "ds", images=src / "imgs")
    assert ds.manifest["splits"] == {"artifacts": {"train": 3, "test": 2}, "params": {"train": 2, "test": 1}}
    train = ds.samples("artifacts", "train")
    assert [s.id for s in train] == ["IC-1", "NCM-7", "NCM-7#2"]
    assert train[0].labels == {"Grid artifacts", "Blurring"}
    assert train[0].metadata["instrument"] == "Velociprobe"
    p = ds.samples("params", "train")[0]
    assert p.labels == {"G", "J", "K"}
    assert "Enable position correction" not in p.text and "Velociprobe" in p.text
    out = export_released(ds, tmp_path / "exported")
    exported = json.loads((out / "params/train.json").read_text())
    assert (
        exported[0]["messages"][0]["content"][0]["text"]
        == json.loads((src / "text/train.json").read_text())[0]["messages"][0]["content"][0]["text"]
    )
    again = import_released(out, tmp_path / "ds2", images=out / "images")
    assert _snapshot(again) == _snapshot(ds)
    assert again.manifest["content_hash"] == ds.manifest["content_hash"]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda r: (r / "visual/train.json").write_text("[{"), "visual/train.json: not valid JSON"),
        (
            lambda r: (r / "text/test.json").write_text(json.dumps([_text("x", "<answer>G, Z</answer>", "c", "T9")])),
            "text/test.json record 0: unknown option 'Z'",
        ),
        (
            lambda r: (r / "visual/test.json").write_text(
                json.dumps([_visual("img_3.png", "<answer>[Moire fringes]</answer>", "c", "X")])
            ),
            "visual/test.json record 0: unknown label 'Moire fringes'",
        ),
        (lambda r: (r / "imgs/nested/img_4.png").unlink(), "visual/test.json record 1: image 'img_4.png'"),
        (
            lambda r: (r / "text/train.json").write_text(json.dumps([_text("x", "G and K", "c", "T9")])),
            "text/train.json record 0: the assistant turn has no <answer>",
        ),
    ],
)
def test_corrupt_release_fails_naming_the_problem(tmp_path, corrupt, message):
    src = make_release(tmp_path / "release")
    corrupt(src)
    with pytest.raises(DatasetError) as e:
        import_released(src, tmp_path / "ds", images=src / "imgs")
    assert message in str(e.value)
