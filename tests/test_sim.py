"""PtychoBench-Sim: physics conventions, the quick build, and the shipped sim-v1."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

ptychi = pytest.importorskip("ptychi")
torch = pytest.importorskip("torch")

from conftest import build_quick
from ptychobench.sim import forward


def _ptychi_intensities(obj, probes, positions, wavelength=1e-10, pixel=1e-8, dz=None):
    """Intensities (DC at the corner) from ptychi's own forward model."""
    from ptychi import api
    from ptychi.api.task import PtychographyTask

    n_pos, p = len(positions), probes.shape[-1]
    o = api.LSQMLOptions()
    o.data_options.wavelength_m = wavelength
    o.object_options.pixel_size_m = pixel
    if dz is not None:
        o.object_options.slice_spacings_m = [dz]
    o.reconstructor_options.default_device = api.Devices.CPU
    o.reconstructor_options.num_epochs = 1
    o.reconstructor_options.batch_size = n_pos
    task = PtychographyTask(
        o,
        diffraction_data=np.ones((n_pos, p, p), np.float32),
        object_data=obj.astype(np.complex64),
        probe_data=probes[None].astype(np.complex64),
        probe_position_y_px=positions[:, 0].astype(np.float32),
        probe_position_x_px=positions[:, 1].astype(np.float32),
    )
    fm = task.reconstructor.forward_model
    with torch.no_grad():
        y = fm.forward(torch.arange(n_pos))
    return y.cpu().numpy()


@pytest.mark.parametrize("n_slices", [1, 2])
def test_forward_model_matches_ptychi(n_slices):
    rng = np.random.default_rng(3)
    n, p = 48, 16
    obj = np.exp(0.3 * rng.standard_normal((n_slices, n, n)) * 1j - 0.05 * rng.random((n_slices, n, n))).astype(
        np.complex64
    )
    from scipy import ndimage

    obj = ndimage.gaussian_filter(obj.real, (0, 1, 1)) + 1j * ndimage.gaussian_filter(obj.imag, (0, 1, 1))
    y, x = np.mgrid[0:p, 0:p] - (p - 1) / 2
    main = np.exp(-(x**2 + y**2) / 18.0) * np.exp(0.05j * (x**2 + y**2))
    probes = np.stack([main, 0.3 * main * x / 4]).astype(np.complex64)
    positions = rng.uniform(-10, 10, (7, 2))  # fractional, about the object centre
    wavelength, pixel = 1e-10, 1e-8
    dz = 2e-6 if n_slices == 2 else None
    transfer = forward.asm_transfer(p, wavelength, pixel, dz) if dz else None
    ours = forward.intensities(forward.exit_waves(obj, probes, positions, transfer))
    theirs = _ptychi_intensities(obj, probes, positions, wavelength, pixel, dz)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-3 * ours.max())
    # recorded patterns are DC-centred: fftshift of the DC-corner intensities
    centred = forward.simulate_patterns(obj, probes, positions, transfer)
    np.testing.assert_allclose(np.fft.ifftshift(centred, axes=(-2, -1)), ours, rtol=1e-6, atol=1e-6 * ours.max())


def test_detector_shift_moves_the_pattern():
    n, p = 48, 16
    obj = np.ones((1, n, n), np.complex64)
    y, x = np.mgrid[0:p, 0:p] - (p - 1) / 2
    probe = np.exp(-(x**2 + y**2) / 8.0)[None].astype(np.complex64)
    pos = np.zeros((1, 2))
    a = forward.simulate_patterns(obj, probe, pos)[0]
    b = forward.simulate_patterns(obj, probe, pos, center_shift=(2.0, -3.0))[0]
    assert np.unravel_index(a.argmax(), a.shape) == (p // 2, p // 2)
    assert np.unravel_index(b.argmax(), b.shape) == (p // 2 + 2, p // 2 - 3)


# --------------------------------------------------------------------------- quick build


# the `quick_build` fixture (one build per session, shared with the runner tests) is in conftest


@pytest.mark.slow
def test_quick_build_is_deterministic_and_loads(quick_build, tmp_path):
    from ptychobench.data import load_dataset

    ds = load_dataset(quick_build)
    assert ds.manifest["splits"]["artifacts"] == {"train": 10, "test": 2, "test-ood": 3}
    assert ds.manifest["splits"]["params"] == {"train": 2, "test": 1, "test-ood": 1}
    assert ds.manifest["generator"]["rules"]["labelling_version"]
    for split in ("train", "test", "test-ood"):
        for s in ds.samples("params", split):
            assert s.labels and s.text and "Enable position correction" not in s.text
    again = build_quick(tmp_path / "again")
    a = json.loads((quick_build / "manifest.json").read_text())
    b = json.loads((again / "manifest.json").read_text())
    assert a["content_hash"] == b["content_hash"]
    assert a["label_counts"] == b["label_counts"]


@pytest.mark.slow
def test_quick_build_splits_share_no_experiment_and_keep_exclusive_options_apart(quick_build):
    from ptychobench.data import load_dataset
    from ptychobench.sim.labels import EXCLUSIVE

    ds = load_dataset(quick_build)
    seeds: dict[str, set] = {}
    for task in ds.tasks:
        for split in ("train", "test", "test-ood"):
            for s in ds.samples(task, split):
                seeds.setdefault(split, set()).add(s.metadata["experiment"]["seed"])
    assert not seeds["train"] & (seeds["test"] | seeds["test-ood"])
    ood = {s.metadata["instrument"]["name"] for t in ds.tasks for s in ds.samples(t, "test-ood")}
    train = {s.metadata["instrument"]["name"] for t in ds.tasks for s in ds.samples(t, "train")}
    assert ood == {"mll-nanoprobe"} and "mll-nanoprobe" not in train
    for split in ("train", "test", "test-ood"):
        for s in ds.samples("params", split):
            for a, b in EXCLUSIVE:
                assert not {a, b} <= s.labels, (s.id, s.labels)


@pytest.mark.slow
def test_fresh_quick_build_passes_validate(quick_build):
    from typer.testing import CliRunner

    from ptychobench.cli import app

    res = CliRunner().invoke(app, ["validate", str(quick_build)])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_quick_build_resumes_to_the_same_files(quick_build, tmp_path):
    from ptychobench.sim.build import QUICK, BuildConfig, run_units

    out = tmp_path / "resumed"
    cfg = BuildConfig(quick=True, **QUICK)
    # an interrupted build: some units finished, one left half-written
    (out / ".work").mkdir(parents=True)
    shutil.copy(quick_build / ".work" / "config.json", out / ".work" / "config.json")
    for unit in ("exp0000", "exp0003", "exp0009"):
        for ext in ("npy", "png", "json"):
            shutil.copy(quick_build / ".work" / f"{unit}.{ext}", out / ".work")
    (out / ".work" / "exp0005.png.tmp123").write_bytes(b"partial")
    (out / ".work" / "exp0011.png").write_bytes(b"png without its record")
    seen = []
    run_units(cfg, out, workers=1, progress=lambda d, t: seen.append(d))
    assert seen[0] == 3  # the finished units were not redone
    build_quick(out)
    a = json.loads((quick_build / "manifest.json").read_text())["content_hash"]
    b = json.loads((out / "manifest.json").read_text())["content_hash"]
    assert a == b


@pytest.mark.slow
def test_verified_option_gain_is_what_repeated_reconstructions_measure(quick_build):
    """Reconstruct one quick text sample with and without its verified best option, over
    the same repeats the build used: the mean gain is the stored one and passes the margin."""
    from ptychobench.data import load_dataset
    from ptychobench.sim.build import QUICK, BuildConfig, experiment_for
    from ptychobench.sim.defects import acquire
    from ptychobench.sim.labels import GAIN_MARGIN, N_SEEDS
    from ptychobench.sim.pipeline import run_recon

    ds = load_dataset(quick_build)
    samples = [s for sp in ("train", "test", "test-ood") for s in ds.samples("params", sp) if s.labels != {"L"}]
    assert samples, "the quick build should hold a sample with an option label"
    s = samples[0]
    gains = s.metadata["option_gains"]
    best = max((x for x in s.labels if x != "L"), key=lambda x: gains[x])
    exp = experiment_for(BuildConfig(quick=True, **QUICK), s.id)
    acq = acquire(exp)
    rec = json.loads((quick_build / ".work" / f"{s.id}.json").read_text())
    fixed_params = type(exp.params)(**rec["trials"][best]["params"])
    g = []
    for k in range(N_SEEDS):
        base = run_recon(exp, acq, exp.params, seed_index=k)["metrics"]["error"]
        fixed = run_recon(exp, acq, fixed_params, seed_index=k)["metrics"]["error"]
        g.append((base - fixed) / base)
    assert np.mean(g) >= GAIN_MARGIN
    assert abs(np.mean(g) - gains[best]) < 1e-3  # the stored gain is what we measure


def test_stratified_split_puts_every_label_in_both_splits():
    from ptychobench.sim.build import stratified_split

    labs = [frozenset({"a"})] * 2 + [frozenset({"b", "c"})] * 5 + [frozenset({"c"})] * 30
    split = stratified_split(labs, 8, seed=0, space=("a", "b", "c"))
    assert split.count("test") == 8
    for lab in "abc":
        assert {split[i] for i, s in enumerate(labs) if lab in s} == {"train", "test"}
    assert split == stratified_split(labs, 8, seed=0, space=("a", "b", "c"))


# --------------------------------------------------------------------------- shipped data


def test_shipped_sim_v1_loads_with_sizes_and_labels():
    from ptychobench.data import load_dataset
    from ptychobench.data.registry import SHIPPED_DIR
    from ptychobench.tasks import ARTIFACT_LABELS

    root = SHIPPED_DIR / "sim-v1"
    if not (root / "manifest.json").is_file():
        pytest.skip("sim-v1 not built into the package yet")
    ds = load_dataset(root)
    assert ds.manifest["splits"]["artifacts"] == {"train": 312, "test": 79}
    assert ds.manifest["splits"]["params"] == {"train": 91, "test": 44}
    for split in ("train", "test"):
        present = set().union(*(s.labels for s in ds.samples("artifacts", split)))
        assert present == set(ARTIFACT_LABELS), set(ARTIFACT_LABELS) - present
        for s in ds.samples("params", split):
            assert s.labels and s.text and s.metadata["option_gains"]
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 25 * 1024 * 1024
    assert (root / "validation.md").is_file()
    assert (root / "released" / "artifacts" / "test.json").is_file()


def test_shipped_sim_v2_is_the_default_with_its_sizes_and_disjoint_experiments():
    """The shipped sim-v2: the registry's default, paper-sized splits plus test-ood, labels
    under the current labelling version, no experiment in two splits or two tasks (the
    experiment recipe's seed identifies it), and under 30 MB."""
    from ptychobench.data import load_dataset
    from ptychobench.data.registry import DEFAULT_DATASET, SHIPPED_DIR
    from ptychobench.sim.labels import LABELLING_VERSION

    assert DEFAULT_DATASET == "sim-v2"
    root = SHIPPED_DIR / "sim-v2"
    ds = load_dataset(root)
    assert ds.manifest["splits"]["artifacts"] == {"train": 312, "test": 79, "test-ood": 79}
    assert ds.manifest["splits"]["params"] == {"train": 91, "test": 44, "test-ood": 44}
    where: dict[int, set[tuple[str, str]]] = {}
    for (task, split), samples in ds.splits.items():
        for s in samples:
            assert s.metadata["labelling_version"] == LABELLING_VERSION
            where.setdefault(s.metadata["experiment"]["seed"], set()).add((task, split))
    assert all(len(v) == 1 for v in where.values())
    ood = {s.metadata["instrument"]["name"] for s in ds.samples("artifacts", "test-ood")}
    main = {s.metadata["instrument"]["name"] for s in ds.samples("artifacts", "train")}
    assert ood and not ood & main
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 30 * 1024 * 1024
    assert "## Blind reviews" in (root / "validation.md").read_text()


# --------------------------------------------------------------------------- measurement


@pytest.fixture(scope="module")
def specimen():
    from ptychobench.sim.objects import make_object
    from ptychobench.sim.perturb import FIELD

    return make_object("catalyst nanoparticles", np.random.default_rng(11), FIELD)


def _labels(recon, truth):
    from ptychobench.sim.labels import artifact_labels
    from ptychobench.sim.measure import metrics
    from ptychobench.sim.perturb import ROI, STEP

    m = metrics(recon, truth, roi=ROI, step_px=STEP, scan="raster")
    return m, artifact_labels(m)


def test_perfect_reconstruction_has_no_artifacts(specimen):
    # a global phase and a sub-pixel shift are ambiguities of ptychography, not artifacts
    n = specimen.shape[-1]
    shifted = np.fft.ifft2(
        np.fft.fft2(specimen) * np.exp(-2j * np.pi * 0.4 * np.fft.fftfreq(n)[None, None, :])
    ) * np.exp(0.7j)
    m, labels = _labels(shifted, specimen)
    assert labels == {"No obvious artifacts"}, m
    assert m["corr"] > 0.99


def test_each_measured_defect_gives_its_label(specimen):
    from scipy import ndimage

    rng = np.random.default_rng(0)
    n = specimen.shape[-1]
    y, x = np.mgrid[0:n, 0:n]
    ramp = specimen * np.exp(1j * 0.05 * x)
    assert "Phase ramp" in _labels(ramp, specimen)[1]
    blurred = ndimage.gaussian_filter(specimen.real, (0, 2.5, 2.5)) + 1j * ndimage.gaussian_filter(
        specimen.imag, (0, 2.5, 2.5)
    )
    assert "Blurring" in _labels(blurred, specimen)[1]
    noisy = specimen * np.exp(1j * 0.4 * rng.standard_normal(specimen.shape))
    assert "Noisy artifacts" in _labels(noisy, specimen)[1]
    flat = np.exp(1j * 0.3 * np.angle(specimen)) * np.abs(specimen)
    assert "Low contrast" in _labels(flat, specimen)[1]
    garbage = np.exp(1j * ndimage.gaussian_filter(rng.standard_normal(specimen.shape), (0, 2, 2)))
    assert "No clear structure" in _labels(garbage, specimen)[1]
    grid = specimen * np.exp(1j * 0.25 * np.cos(2 * np.pi * x / 9.8) * np.cos(2 * np.pi * y / 9.8))
    assert "Grid artifacts" in _labels(grid, specimen)[1]


def test_stratified_split_gives_a_rare_label_three_test_positives():
    """A label on 6 of 100 samples would get 1 of a 20-sample test split by its share; the
    split gives it 3 (half its positives), so its test score rests on more than one image."""
    from ptychobench.sim.build import stratified_split

    labs = [frozenset({"rare"})] * 6 + [frozenset({"common"})] * 94
    split = stratified_split(labs, 20, seed=0, space=("rare", "common"))
    assert sum(sp == "test" for sp, s in zip(split, labs) if "rare" in s) == 3
    assert split.count("test") == 20
