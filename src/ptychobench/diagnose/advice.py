"""Parameter advice: the parameter task's question, asked about a user's reconstruction.

The text is written the way the parameter task's samples are (``sim/text.py``: the
reconstruction log with the current parameters, the visible artifacts and the run's
diagnostics), from the user's parameters (a YAML/JSON file of ``ReconParams`` fields, or a
pty-chi options dump, ``options.get_dict()``), the detector's labels and the truth-free
measurements. The chosen advisor answers it: ``text-probe`` (default; fitted once on the
default dataset's params TRAIN split and cached beside the detectors), ``knn-vote``, or any
model the runner knows. The probes are fitted on diagnose's own texts of the train
experiments where they are shipped (``advisor_texts/<dataset>-train.jsonl``: each train
experiment reconstructed and diagnosed as a user's run would be), so the advisor reads at
use the kind of text it was fitted on. Each option comes with its evidence: the advisor's probability
against its tuned threshold, and the most similar training experiments where the option
was verified to help, with the error reduction measured there.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic
from ..tasks import NO_ARTIFACTS, PARAM_OPTIONS, get_task
from .convergence import MORE_ITERATIONS, still_falling
from .detector import knn_vote
from .evidence import measured_verdicts
from .io import DiagnoseError
from .measure import Measurement

DEFAULT_ADVISOR = "text-probe"
PROBE_ADVISORS = ("text-probe", "knn-vote")
#: keys a --params file may carry besides ReconParams' fields
EXTRA_KEYS = (
    "sample_type",
    "instrument",
    "scan",
    "n_positions",
    "detector_px",
    "loss",
    "com_offset_px",
    "mean_counts",
    "near_field",
)
N_NEIGHBOURS = 5
NO_CHANGE = "L"
#: far-field data preparation: recentring, binning and re-orienting diffraction patterns
#: mean nothing for near-field holograms (no beam centre, every pixel is image)
FAR_FIELD_ONLY = ("M", "O", "Q")
#: diagnose's own texts of a dataset's params TRAIN experiments (benchmarks/diagnose_texts.py)
OWN_TEXTS_DIR = Path(__file__).parent / "advisor_texts"
GENERIC_NOTE = (
    "generic advice: no --params given, so your run is assumed to use this project's default "
    "parameters; give --params (your parameters) for advice on your run"
)


@dataclass
class CurrentParams:
    params: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Option:
    letter: str
    text: str
    chosen: bool
    probability: float | None
    threshold: float | None
    evidence: list[str]


@dataclass
class Advice:
    advisor: str
    text: str
    options: list[Option]
    notes: list[str]
    reply: str | None = None
    generic: bool = False  # no --params: the advice assumes the default parameters

    @property
    def chosen(self) -> list[str]:
        return [o.letter for o in self.options if o.chosen]

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- parameters


def _recon_fields() -> dict[str, Any]:
    from ..sim.recon import ReconParams

    return {f.name: f.default for f in fields(ReconParams)}


def _from_ptychi(d: dict[str, Any], where: str) -> CurrentParams:
    """Map a pty-chi ``LSQMLOptions.get_dict()`` dump onto ReconParams fields."""
    r = d.get("reconstructor_options") or {}
    obj = d.get("object_options") or {}
    pos = d.get("probe_position_options") or {}
    opr = d.get("opr_mode_weight_options") or {}
    p = _recon_fields()
    notes = []
    try:
        p["n_epochs"] = int(r.get("num_epochs", p["n_epochs"]))
        p["batch_size"] = int(r.get("batch_size", p["batch_size"]))
        mode = str(r.get("batching_mode", "random")).lower().split(".")[-1]
        p["batching"] = mode if mode in ("random", "compact", "uniform") else "random"
        p["momentum"] = float(r.get("momentum_acceleration_gain") or 0) > 0
        p["noise_model"] = str(r.get("noise_model", "gaussian")).lower().split(".")[-1]
        p["multimodal_update"] = bool(obj.get("multimodal_update", True))
        smooth = obj.get("smoothness_constraint") or {}
        p["regularization"] = float(smooth.get("alpha") or 0) if smooth.get("enabled") else 0.0
        p["multislice"] = bool(obj.get("slice_spacings_m"))
        p["position_correction"] = bool(pos.get("optimizable", False))
        p["affine_constraint"] = bool((pos.get("affine_transform_constraint") or {}).get("enabled", False))
    except (TypeError, ValueError) as e:
        raise DiagnoseError(f"{where}: pty-chi options dump with an unexpected value ({e})") from None
    p["n_opr_modes"] = int(d.get("n_opr_modes", 1 if opr.get("optimizable") else 0))
    p["n_probe_modes"] = int(d.get("n_probe_modes", 1))
    if "n_probe_modes" not in d:
        notes.append("probe modes are not in a pty-chi options dump (the initial guess is left out); assumed 1")
    if opr.get("optimizable") and "n_opr_modes" not in d:
        notes.append("OPR mode weights are optimised; the number of OPR modes is not in the dump, assumed 1")
    extras = {k: d[k] for k in EXTRA_KEYS if k in d}
    return CurrentParams(p, extras, notes)


def load_params(path: Path | str) -> CurrentParams:
    """Current parameters from a YAML/JSON file: ``ReconParams`` fields (missing ones keep
    their defaults) plus the optional keys in ``EXTRA_KEYS``, or a pty-chi options dump."""
    from ..safeio import read_yaml

    p = Path(path).expanduser()
    try:
        data = read_yaml(p, DiagnoseError, "parameters file")  # an alias bomb or deep nesting: one line
    except OSError as e:
        raise DiagnoseError(f"{p}: cannot read parameters ({e})") from None
    if not isinstance(data, dict):
        raise DiagnoseError(f"{p}: expected a mapping of parameters (YAML or JSON), got {type(data).__name__}")
    if "reconstructor_options" in data or data.get("options_class_name", "").endswith("Options"):
        return _from_ptychi(data, str(p))
    params = _recon_fields()
    allowed = set(params) | set(EXTRA_KEYS)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DiagnoseError(
            f"{p}: unknown parameter(s) {unknown}; allowed: {', '.join(sorted(allowed))} (or a pty-chi options dump)"
        )
    for k, default in params.items():
        if k in data:
            v = data[k]
            ok = isinstance(v, type(default)) or (isinstance(default, float) and isinstance(v, int))
            if isinstance(default, bool):
                ok = isinstance(v, bool)
            elif isinstance(default, int):
                ok = isinstance(v, int) and not isinstance(v, bool)
            if not ok:
                raise DiagnoseError(f"{p}: {k} must be {type(default).__name__}, got {v!r}")
            params[k] = v
    return CurrentParams(params, {k: data[k] for k in EXTRA_KEYS if k in data})


# --------------------------------------------------------------------------- the text


def _param_lines(cur: CurrentParams) -> list[str]:
    from ..sim.text import describe_params

    n_pos = cur.extras.get("n_positions")
    det = cur.extras.get("detector_px")
    lines = describe_params(cur.params, int(n_pos or cur.params["batch_size"]), int(det or 0))
    p = cur.params
    if not n_pos:
        from ..sim.text import BATCHING

        lines[1] = f"batch size: {p['batch_size']}, {BATCHING[p['batching']]} batch selection"
    if not det:
        lines[-1] = (
            f"diffraction patterns: size not given, orientation {p['orientation']}, "
            f"recentred: {'yes' if p['recenter'] else 'no'}"
        )
    if cur.extras.get("near_field"):
        size = f"{int(det)} x {int(det)} px" if det else "size not given"
        lines[-1] = f"near-field holograms (Fresnel propagation to the detector): {size}, as recorded"
    return lines


def _measure_line(m: dict[str, Measurement]) -> str:
    parts = []
    for key in ("ramp", "vortices", "grid_peak", "background", "noise", "frc_resolution"):
        x = m.get(key)
        if x is not None and x.value is not None:
            parts.append(f"{x.title.lower()} {x.value:.3g} {x.unit}")
    return "no-reference measurements of the phase: " + "; ".join(parts)


def advice_text(name: str, labels: list[str], measurements: dict[str, Measurement], cur: CurrentParams | None) -> str:
    """The parameter task's kind of text (``sim/text.py``, log style) for a user's run."""
    cur = cur or CurrentParams(_recon_fields(), notes=["no --params given: pty-chi defaults of this project assumed"])
    ex = cur.extras
    visible = [lab for lab in labels if lab != NO_ARTIFACTS]
    diag = []
    loss = ex.get("loss")
    if isinstance(loss, list) and loss:
        from ..sim.text import _loss_points, _trend

        diag.append(
            f"data error (MSE of sqrt intensities) - {_loss_points([float(v) for v in loss])}; "
            f"trend: {_trend([float(v) for v in loss])}"
        )
    if ex.get("com_offset_px"):
        c = ex["com_offset_px"]
        diag.append(
            f"mean diffraction pattern centre of mass offset from detector centre: "
            f"({float(c[0]):+.1f}, {float(c[1]):+.1f}) px (y, x)"
        )
    if ex.get("mean_counts"):
        diag.append(f"mean counts per diffraction pattern: {float(ex['mean_counts']):.3g}")
    diag.append(_measure_line(measurements))
    out = [
        f"Reconstruction log, sample {name}",
        f"Instrument: {ex.get('instrument', 'not given')}.",
        f"Sample type: {ex.get('sample_type', 'not given')}.",
        f"Scan: {ex.get('scan', 'not given')}."
        + (" Near-field (holographic) geometry." if ex.get("near_field") else ""),
        "Current reconstruction parameters:",
        *[f"  - {x}" for x in _param_lines(cur)],
        f"Visible artifacts in the reconstructed phase: {', '.join(visible) if visible else 'no obvious artifacts'}.",
        "Convergence diagnostics:",
        *[f"  - {x}" for x in diag],
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- advisors


@dataclass
class ProbeAdvisor:
    kind: str
    dataset: str
    probe: Any
    train_X: np.ndarray
    train_Y: np.ndarray
    train_meta: list[dict]
    labels: list[str]
    calibration: dict[str, tuple[float, float]] = field(default_factory=dict)
    own_texts: bool = False  # fitted on diagnose's texts of the train experiments, not the dataset's
    #: per option, the mean measured error reduction on the train experiments where it was
    #: verified and where it was not (``option_gains``; the expected-gain rule)
    gains: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        on = f"diagnose's texts of {self.dataset} train" if self.own_texts else f"{self.dataset} train"
        return f"{self.kind} (MiniLM, fitted on {on})"

    def advise(self, text: str, cur: CurrentParams | None = None, clean: bool = False) -> Advice:
        """The options for ``text``; ``cur`` rules out options that cannot apply to the
        current parameters (or to near-field data), ``clean`` (no visible artifact)
        makes "No changes needed" the answer."""
        from ..strategies.embeddings import normalize

        raw = _embed_texts([text])  # the probe was fitted on raw features
        x = normalize(raw)
        sims = (x @ self.train_X.T)[0]
        nearest = np.argsort(-sims, kind="stable")[:N_NEIGHBOURS]
        if self.kind == "text-probe":
            proba = self.probe.predict_proba(raw)[0]
            thr = self.probe.threshold_vector()
        else:
            proba = knn_vote(sims[None, :], self.train_Y, N_NEIGHBOURS)[0]
            thr = np.full(len(self.labels), 0.5 + 1e-9)
        shown_p = calibrate(self.calibration, self.labels, proba)
        shown_t = calibrate(self.calibration, self.labels, thr)
        blocked = {lab: why for lab in self.labels if (why := blocked_by(lab, cur))}
        ok = [lab not in blocked for lab in self.labels]
        likely = {lab for lab, p, t, o in zip(self.labels, proba, thr, ok) if o and p >= t}
        eg = expected_gains(self.gains, self.labels, shown_p)
        harmful = {lab for lab, g in zip(self.labels, eg) if lab in likely and lab != NO_CHANGE and g <= 0}
        chosen = likely - harmful
        notes = []
        if harmful:
            notes.append(
                f"{', '.join(sorted(harmful))} passed the threshold but, at this probability, the train experiments "
                "measured a larger error on average: not advised"
            )
        if not chosen:  # nothing both likely and expected to help
            chosen = {NO_CHANGE}
            notes.append("no option is both likely and expected to lower the error: no changes advised")
        chosen, rule = no_change_rule(chosen, clean)
        jk = self.labels.index(MORE_ITERATIONS)
        falling = still_falling(cur.extras) if cur is not None else None
        said = f"{self.kind} probability {shown_p[jk]:.2f}, threshold " + (
            f"{shown_t[jk]:.2f}" if np.isfinite(shown_t[jk]) else "never"
        )
        chosen, overridden = loss_rule(chosen, falling, MORE_ITERATIONS in blocked, said)
        order = sorted(range(len(self.labels)), key=lambda j: (self.labels[j] != NO_CHANGE or not clean, -proba[j]))
        shown = [j for j in order if self.labels[j] in chosen] + [j for j in order if self.labels[j] not in chosen][
            : max(0, 5 - len(chosen))
        ]
        options = []
        for j in shown:
            letter = self.labels[j]
            t = "never" if not np.isfinite(shown_t[j]) else f"{shown_t[j]:.2f}"
            ev = [f"{self.kind} probability {shown_p[j]:.2f} (threshold {t}; calibrated on held-out folds of train)"]
            if np.isfinite(eg[j]) and letter != NO_CHANGE:
                change = round(-100 * float(eg[j])) + 0  # + 0: no "-0"
                ev.append(f"expected error change at this probability: {change:+d}% (train experiments)")
            if letter in blocked:
                ev.insert(0, blocked[letter])
            if letter == MORE_ITERATIONS and overridden:
                ev.insert(0, f"advised by the measurement: {falling}")
            support = [i for i in nearest if self.train_Y[i, j]]
            ev.append(f"{len(support)} of the {len(nearest)} most similar training experiments had it verified")
            for i in support[:2]:
                m = self.train_meta[i]
                gain = (m.get("option_gains") or {}).get(letter)
                arts = ", ".join(m.get("visible_artifacts") or []) or "no obvious artifacts"
                g = f"error reduced by {100 * gain:.0f}%" if isinstance(gain, (int, float)) else "helped"
                ev.append(
                    f"{m.get('sample_id', '?')} ({m.get('sample_type', '?')}; {arts}): {g} [similarity {sims[i]:.2f}]"
                )
            options.append(
                Option(
                    letter,
                    PARAM_OPTIONS[letter],
                    letter in chosen,
                    round(float(shown_p[j]), 4),
                    None if not np.isfinite(shown_t[j]) else round(float(shown_t[j]), 4),
                    ev,
                )
            )
        return Advice(self.name, text, options, notes + [n for n in (rule, overridden) if n])


def _embed_texts(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings without the disk cache (a user's text is never stored)."""
    from ..data import Sample
    from ..strategies.embeddings import embedder_for

    emb = embedder_for("text", use_cache=False)
    return emb.embed([Sample(f"t{i}", "test", "params", "unknown", t, None, frozenset()) for i, t in enumerate(texts)])


def own_texts_path(dataset_name: str) -> Path:
    """Where diagnose's own texts of ``dataset_name``'s params train experiments are shipped."""
    return OWN_TEXTS_DIR / f"{dataset_name}-train.jsonl"


def read_own_texts(path: Path, train: list) -> list:
    """The train samples with diagnose's text of each in place of the dataset's (labels and
    metadata unchanged). Every row must name a train experiment: nothing else is fitted on."""
    import dataclasses
    import json

    by_id = {s.id: s for s in train}
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            sid, text = row["id"], row["text"]
        except (ValueError, KeyError, TypeError):
            raise DiagnoseError(f"{path}: line {i}: expected a JSON object with 'id' and 'text'") from None
        if sid not in by_id:
            raise DiagnoseError(f"{path}: line {i}: {sid!r} is not an experiment of the params train split")
        out.append(dataclasses.replace(by_id[sid], text=str(text)))
    return out


def own_train_samples(dataset: str | None = None) -> list:
    """The params train samples of ``dataset`` with diagnose's shipped texts of them."""
    from ..data import load_dataset
    from ..data.registry import DEFAULT_DATASET

    ds = load_dataset(dataset or DEFAULT_DATASET, check_images=False)
    path = own_texts_path(ds.name)
    if not path.is_file():
        raise DiagnoseError(f"{path}: no diagnose texts of {ds.name} train (benchmarks/diagnose_texts.py writes them)")
    return read_own_texts(path, ds.samples("params", "train"))


def _advisor_cache(kind: str, dataset: str | None, own_texts: bool) -> Path:
    from ..data import load_dataset
    from ..data.registry import DEFAULT_DATASET
    from .detector import CACHE_VERSION, _source_hash, detectors_dir

    ds = load_dataset(dataset or DEFAULT_DATASET, check_images=False)
    texts = own_texts_path(ds.name)
    texts_hash = hashlib.sha256(texts.read_bytes()).hexdigest() if own_texts and texts.is_file() else "dataset"
    own_source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # this module's rules and fields
    key = "|".join(
        [kind, ds.manifest.get("content_hash", ""), str(ds.root), _source_hash(), str(CACHE_VERSION), texts_hash]
        + [own_source]
    )
    return detectors_dir() / f"{kind}-{ds.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pkl"


def load_probe_advisor(kind: str = DEFAULT_ADVISOR, dataset: str | None = None, own_texts: bool = True) -> ProbeAdvisor:
    """The probe advisor, fitted on the params train split: on diagnose's own texts of those
    experiments where they are shipped (``own_texts``), else on the dataset's texts."""
    from ..data import load_dataset
    from ..data.registry import DEFAULT_DATASET
    from ..strategies.embeddings import normalize
    from ..strategies.probes import LinearProbe, label_matrix

    path = _advisor_cache(kind, dataset, own_texts)
    if path.is_file():
        try:
            with path.open("rb") as f:
                adv = pickle.load(f)
            if isinstance(adv, ProbeAdvisor):
                return adv
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass
    ds = load_dataset(dataset or DEFAULT_DATASET, check_images=False)
    train = ds.samples("params", "train")
    texts = own_texts_path(ds.name)
    own = own_texts and texts.is_file()
    if own:
        train = read_own_texts(texts, train)
    labels = list(get_task("params").labels)
    X = _embed_texts([s.text for s in train])
    Y = label_matrix(train, labels)
    probe = LinearProbe(labels, seed=0).fit(X, Y) if kind == "text-probe" else None
    Xn = normalize(X)
    if probe is not None:
        oof = {lab: probe.oof[lab] for lab in labels if lab in probe.oof}
    else:  # knn-vote: each training text's vote among the others
        sims = Xn @ Xn.T
        np.fill_diagonal(sims, -np.inf)
        votes = knn_vote(sims, Y, N_NEIGHBOURS)
        oof = {lab: votes[:, j] for j, lab in enumerate(labels)}
    calib = fit_calibration(oof, Y, labels)
    meta = [s.metadata for s in train]
    adv = ProbeAdvisor(kind, ds.name, probe, Xn, Y, meta, labels, calib, own, option_gains(meta, Y, labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, pickle.dumps(adv))
    return adv


@dataclass
class ModelAdvisor:
    model: str
    adapter: str | None = None
    _backend: Any = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.model + (f" + adapter {self.adapter}" if self.adapter else "")

    def advise(self, text: str, cur: CurrentParams | None = None, clean: bool = False) -> Advice:
        from ..data import Sample
        from ..models import GREEDY, load_backend

        if self._backend is None:
            try:
                self._backend = load_backend(self.model, self.adapter)
            except (ValueError, RuntimeError, ImportError, OSError) as e:
                raise DiagnoseError(f"advisor {self.model!r}: cannot load ({e})") from None
        task = get_task("params")
        gen = self._backend.generate(
            [task.render(Sample("user", "test", "params", "unknown", text, None, frozenset()))], GREEDY
        )[0]
        if not gen.ok:
            raise DiagnoseError(f"advisor {self.name}: generation failed ({gen.error})")
        named = set(task.parse(gen.text).labels)
        blocked = {x: why for x in named if (why := blocked_by(x, cur))}
        letters, rule = no_change_rule(named - set(blocked), clean)
        falling = still_falling(cur.extras) if cur is not None else None
        letters, overridden = loss_rule(
            letters, falling, bool(blocked_by(MORE_ITERATIONS, cur)), f"{self.name} did not name it"
        )

        def source(x: str) -> str:
            if x in named:
                return f"named by {self.name}"
            if x == MORE_ITERATIONS and overridden:
                return f"advised by the measurement: {falling}"
            return f"not named by {self.name}; added by the rule: {rule}"

        options = [
            Option(x, PARAM_OPTIONS[x], x in letters, None, None, [source(x), *([blocked[x]] if x in blocked else [])])
            for x in sorted(named | letters)
        ]
        notes = ([] if named else ["the model's reply named no option"]) + [n for n in (rule, overridden) if n]
        return Advice(self.name, text, options, notes, reply=gen.text)


@lru_cache(maxsize=4)
def get_advisor(name: str = DEFAULT_ADVISOR, adapter: str | None = None, dataset: str | None = None):
    if name in PROBE_ADVISORS:
        if adapter:
            raise DiagnoseError(f"--advisor-adapter applies to a model advisor, not {name!r}")
        try:
            return load_probe_advisor(name, dataset)
        except ImportError as e:
            raise DiagnoseError(f"advisor {name!r}: {e}") from None
    if name == "vision-probe":
        raise DiagnoseError("vision-probe reads images; advice needs text-probe, knn-vote or a language model")
    return ModelAdvisor(name, adapter)


def advise(
    name: str,
    labels: list[str],
    measurements: dict[str, Measurement],
    cur: CurrentParams | None,
    advisor: str = DEFAULT_ADVISOR,
    adapter: str | None = None,
    dataset: str | None = None,
    near_field: bool = False,
) -> Advice:
    """The advice for one reconstruction. Without ``cur`` (no ``--params``) it is marked
    generic: the project's default parameters stand in for the user's."""
    generic = cur is None
    if cur is None:
        cur = CurrentParams(_recon_fields(), {"generic": True}, [GENERIC_NOTE])
    if near_field:
        cur.extras["near_field"] = True
    text = advice_text(name, labels, measurements, cur)
    adv = get_advisor(advisor, adapter, dataset).advise(text, cur, is_clean(labels, measurements))
    adv.generic = generic
    adv.notes = cur.notes + adv.notes
    return adv


# --------------------------------------------------------------------------- rules


def is_clean(labels: list[str], measurements: dict[str, Measurement]) -> bool:
    """No visible artifact after the measurements, and no decisive measurement."""
    return not (set(labels) - {NO_ARTIFACTS}) and not any(
        present for present, _, _ in measured_verdicts(measurements).values()
    )


def blocked_by(letter: str, cur: CurrentParams | None) -> str | None:
    """Why ``letter`` cannot be advised for this run (None: it can). Without ``--params``
    (generic advice) nothing is known about the run's parameters and only the near-field
    rule applies."""
    if cur is None:
        return None
    if cur.extras.get("near_field") and letter in FAR_FIELD_ONLY:
        return (
            "not for near-field data: holograms have no beam centre to recentre, no half-size crop, no orientation slip"
        )
    if letter == NO_CHANGE or cur.extras.get("generic"):
        return None
    from ..sim.options import candidates
    from ..sim.recon import ReconParams

    try:
        p = ReconParams(**cur.params)
    except TypeError:
        return None
    n_pos = int(cur.extras.get("n_positions") or 10**6)
    com = cur.extras.get("com_offset_px") or (1.0, 1.0)
    if not candidates(letter, p, n_pos, (float(com[0]), float(com[1]))):
        return "does not apply to the current parameters (it would change nothing)"
    return None


def no_change_rule(chosen: set[str], clean: bool) -> tuple[set[str], str | None]:
    """ "No changes needed" (L) is never advised beside a change: on a clean image (no
    visible artifact, no decisive measurement) it is the answer, otherwise the changes
    are."""
    if clean:
        return {NO_CHANGE}, (
            None if chosen == {NO_CHANGE} else "no visible artifact and no decisive measurement: no changes needed"
        )
    if NO_CHANGE in chosen and len(chosen) > 1:
        return chosen - {
            NO_CHANGE
        }, "artifacts are visible: the advised changes stand and 'No changes needed' is dropped"
    return chosen, None


def loss_rule(chosen: set[str], why: str | None, blocked: bool, advisor_said: str) -> tuple[set[str], str | None]:
    """K added (and "No changes needed" dropped) where ``why`` (``convergence.still_falling``)
    says the loss still falls and the advisor did not choose K; the note names what the
    advisor said (``advisor_said``)."""
    if why is None or blocked or MORE_ITERATIONS in chosen:
        return chosen, None
    dropped = " and 'No changes needed' withdrawn" if NO_CHANGE in chosen else ""
    out = (chosen - {NO_CHANGE}) | {MORE_ITERATIONS}
    return out, f"K, more iterations: {why}: the measurement overrides the advisor ({advisor_said}){dropped}"


def fit_calibration(oof: dict[str, np.ndarray], Y: np.ndarray, labels: list[str]) -> dict[str, tuple[float, float]]:
    """Platt scaling per option: a logistic regression of the option's presence on the
    logit of its out-of-fold probability (train split only). The probe's class weights
    push rare options' raw probabilities to near 1; this maps them to frequencies."""
    from sklearn.linear_model import LogisticRegression

    out: dict[str, tuple[float, float]] = {}
    for j, lab in enumerate(labels):
        if lab not in oof or Y[:, j].min() == Y[:, j].max():
            continue
        z = _logit(np.asarray(oof[lab], float))[:, None]
        m = LogisticRegression(C=1.0).fit(z, Y[:, j])
        a, b = float(m.coef_[0, 0]), float(m.intercept_[0])
        if a > 0:  # a monotone map; otherwise the raw probability is shown
            out[lab] = (a, b)
    return out


def option_gains(meta: list[dict], Y: np.ndarray, labels: list[str]) -> dict[str, tuple[float, float]]:
    """Per option, the mean relative error reduction measured on the train experiments
    (``metadata["option_gains"]``, the option applied alone) where it was verified and
    where it was not; options never measured are left out."""
    out: dict[str, tuple[float, float]] = {}
    for j, lab in enumerate(labels):
        g = np.array([_gain(m, lab) for m in meta], float)
        have = np.isfinite(g)
        yes, no = g[have & (Y[:, j] == 1)], g[have & (Y[:, j] == 0)]
        if len(yes) or len(no):
            out[lab] = (float(yes.mean()) if len(yes) else 0.0, float(no.mean()) if len(no) else 0.0)
    return out


def _gain(m: dict, letter: str) -> float:
    v = (m.get("option_gains") or {}).get(letter)
    return float(v) if isinstance(v, (int, float)) else np.nan


def expected_gains(gains: dict[str, tuple[float, float]], labels: list[str], p: np.ndarray) -> np.ndarray:
    """Each option's expected relative error reduction at calibrated probability ``p``:
    p x (its mean gain where verified) + (1 - p) x (its mean gain where not); NaN where the
    train split never measured it. An option the probe finds likely enough but whose
    wrong use costs more than its right use gains (a wrong orientation, Q, tripled the
    error in training) is then not advised."""
    out = np.full(len(labels), np.nan)
    for j, lab in enumerate(labels):
        if lab in gains:
            yes, no = gains[lab]
            out[j] = p[j] * yes + (1 - p[j]) * no
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def calibrate(calibration: dict[str, tuple[float, float]], labels: list[str], p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities (thresholds map the same way: the decision is unchanged)."""
    out = np.asarray(p, float).copy()
    for j, lab in enumerate(labels):
        if lab in calibration and np.isfinite(out[j]):
            a, b = calibration[lab]
            out[j] = 1 / (1 + np.exp(-(a * _logit(out[j : j + 1])[0] + b)))
    return out
