"""Latency models of one device, fitted on measured whole networks and checked on
held-out ones against the MACs-only baseline.

Features are exact counts from the Keras graph (``keras_mobile.profile``) split by
kernel kind, because the kinds run at different rates (``roofline``): GEMM MACs (1x1
and full convolutions, dense), depthwise MACs, attention matmul MACs, the elements
written by convolutions, by activations that do not fuse into a convolution (hard-swish,
SiLU, GELU, sigmoid), by elementwise merges (adds, multiplies), by LayerNorms and by
attention's reshapes, and the number of ops. The model is non-negative least squares
(every feature costs time, none saves it) plus a per-invoke constant: each coefficient
reads as ms per unit of work on that device.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from keras_mobile.search.device import Device, Measurements

FEATURES = ("gemm_macs", "depthwise_macs", "attention_macs", "conv_outputs",
            "activation_elements", "merge_elements", "norm_elements", "attention_elements",
            "ops")
_FUSED = ("relu", "relu6", None)  # fuse into the preceding convolution in TFLite
_NO_OP = ("InputLayer", "Dropout", "BatchNormalization", "Identity")  # folded / aliased
_SCALE = {"gemm_macs": 1e6, "depthwise_macs": 1e6, "attention_macs": 1e6}  # in millions


def features(model) -> dict[str, float]:
    """The feature counts of a Keras model (per image; MACs in millions, elements in
    thousands)."""
    from keras_mobile.profiling import _calls, layer_macs  # noqa: PLC0415

    f = dict.fromkeys(FEATURES, 0.0)
    for layer, inputs, output in _calls(model):
        kind = layer.__class__.__name__
        if kind in _NO_OP:
            continue
        elements = math.prod(d or 1 for d in output.shape[1:]) / 1e3
        f["ops"] += 1
        macs_kind, macs = layer_macs(layer, inputs, output)
        if kind == "DepthwiseConv2D":
            f["depthwise_macs"] += macs / 1e6
            f["conv_outputs"] += elements
        elif kind in ("Conv2D", "Dense"):
            f["gemm_macs"] += macs / 1e6
            f["conv_outputs"] += elements
        elif macs_kind == "matmul":
            f["attention_macs"] += macs / 1e6
            f["attention_elements"] += elements + sum(
                math.prod(d or 1 for d in t.shape[1:]) for t in inputs) / 1e3
        elif kind in ("LayerNorm", "LayerNormalization"):
            f["norm_elements"] += elements
        elif kind in ("Add", "Multiply", "PartialAdd", "Subtract"):
            f["merge_elements"] += elements
        elif kind in ("Activation", "ReLU"):
            name = getattr(layer, "activation", None)
            name = getattr(name, "__name__", name)
            if kind == "Activation" and name not in _FUSED:
                f["activation_elements"] += elements
        else:  # padding, pooling, reshapes, rescaling: data movement
            f["merge_elements"] += elements
    return f


def macs(model) -> float:
    """All MACs (millions), the baseline's single feature."""
    from keras_mobile.profiling import profile  # noqa: PLC0415

    return profile(model).macs / 1e6


@dataclasses.dataclass(frozen=True)
class Errors:
    """Relative errors of one latency model on held-out networks."""

    name: str
    n: int
    mean_abs: float  # mean |predicted / measured - 1|
    max_abs: float
    within_10: float  # share with |error| <= 10%
    kendall_tau: float
    spearman_rho: float

    @classmethod
    def of(cls, name, predicted, measured) -> Errors:
        import warnings  # noqa: PLC0415

        from scipy import stats  # noqa: PLC0415

        predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
        rel = predicted / measured - 1
        with warnings.catch_warnings():  # constant predictions: the rank statistics are nan
            warnings.simplefilter("ignore")
            tau = float(stats.kendalltau(predicted, measured).statistic)
            rho = float(stats.spearmanr(predicted, measured).statistic)
        return cls(name, len(rel), float(np.mean(np.abs(rel))), float(np.max(np.abs(rel))),
                   float(np.mean(np.abs(rel) <= 0.10)), tau, rho)

    def row(self) -> str:
        return (f"| {self.name} | {self.n} | {100 * self.mean_abs:.1f}% | "
                f"{100 * self.max_abs:.1f}% | {100 * self.within_10:.0f}% | "
                f"{self.kendall_tau:.3f} | {self.spearman_rho:.3f} |")


HEADER = ("| latency model | held-out networks | mean error | worst error | within ±10% | "
          "Kendall τ | Spearman ρ |\n|---|---|---|---|---|---|---|")


@dataclasses.dataclass(frozen=True)
class Validation:
    """Held-out errors of the fitted model and of the MACs-only baselines."""

    model: Errors
    baselines: tuple[Errors, ...]
    goals: dict = dataclasses.field(default_factory=lambda: {
        "mean_abs": 0.05, "within_10": 0.90, "kendall_tau": 0.90})

    def met(self) -> dict:
        e = self.model
        return {"mean_abs": e.mean_abs <= self.goals["mean_abs"],
                "within_10": e.within_10 >= self.goals["within_10"],
                "kendall_tau": e.kendall_tau >= self.goals["kendall_tau"]}

    def __str__(self) -> str:
        return "\n".join([HEADER, self.model.row(), *(b.row() for b in self.baselines)])


def _solve(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares with a free non-negative intercept, on relative
    error (rows weighted by 1 / y: small networks count as much as large ones)."""
    from scipy.optimize import nnls  # noqa: PLC0415

    a = np.hstack([x, np.ones((len(x), 1))]) / y[:, None]
    scale = np.maximum(a.max(axis=0), 1e-12)
    solution, _ = nnls(a / scale, np.ones(len(y)))
    solution = solution / scale
    return solution[:-1], float(solution[-1])


@dataclasses.dataclass
class LatencyModel:
    """Predicted ms of an :class:`~keras_mobile.search.Arch` on one device.

    ``error`` is the stated error: the worst relative error on the held-out networks
    (a network's measured latency is expected within ``predicted * (1 ± error)``).
    """

    device_key: str
    coefficients: dict
    intercept: float
    validation: Validation | None = None
    fit_count: int = 0
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def error(self) -> float:
        if self.validation is None:
            raise ValueError("This latency model was not validated (fit with n_holdout > 0).")
        return self.validation.model.max_abs

    def features(self, arch) -> dict:
        if arch.key not in self._cache:
            self._cache[arch.key] = features(arch.build(classes=10))
        return self._cache[arch.key]

    def predict(self, arch) -> float:
        """Predicted latency in ms."""
        f = self.features(arch)
        return self.intercept + sum(self.coefficients[k] * f[k] for k in FEATURES)

    def validate(self) -> Validation:
        """The held-out errors measured at fit time (see :meth:`fit`)."""
        if self.validation is None:
            raise ValueError("This latency model was not validated (fit with n_holdout > 0).")
        return self.validation

    def terms(self, arch) -> dict:
        """Predicted ms by feature (where the time goes)."""
        f = self.features(arch)
        return {"per invoke": self.intercept, **{k: self.coefficients[k] * f[k]
                                                  for k in FEATURES}}

    @classmethod
    def fit(cls, space, device: Device, *, n_models: int = 80, n_holdout: int = 40,
            seed: int = 0, cache_dir: str | None = None, graph_dir: str | None = None,
            extra=(), progress=None):
        """Measure ``n_models`` random networks of ``space`` (plus ``extra`` ones, e.g. the
        papers') and ``n_holdout`` others on ``device``, fit on the first, validate on
        the held-out ones. Measurements are read from / appended to the device's table
        (:class:`~keras_mobile.search.device.Measurements`), so a second fit, or one
        after an interruption, measures only what is missing; ``graph_dir`` keeps the
        converted graphs for other devices of the same mode."""
        for name, value, low in (("n_models", n_models, 4), ("n_holdout", n_holdout, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")
        if not isinstance(device, Device):
            raise TypeError(f"device must be a keras_mobile.search.Device. Received: {device!r}")
        device.check()
        rng = np.random.default_rng(seed)
        keys = set()
        holdout = _distinct(space, rng, n_holdout, keys)
        train = [a for a in extra if a.key not in keys] + _distinct(space, rng, n_models, keys)
        table = Measurements(device, cache_dir, graph_dir)
        measured = table.measure(train + holdout, progress=progress)
        y_train = np.array(measured[:len(train)])
        model = cls(device.key, {}, 0.0, fit_count=len(train))
        x_train = np.array([[model.features(a)[k] for k in FEATURES] for a in train])
        coef, intercept = _solve(x_train, y_train)
        model.coefficients = dict(zip(FEATURES, map(float, coef), strict=True))
        model.intercept = intercept
        if holdout:
            y_hold = np.array(measured[len(train):])
            predicted = [model.predict(a) for a in holdout]
            model.validation = Validation(Errors.of("kernel features (NNLS)", predicted, y_hold),
                                          _baselines(model, train, y_train, holdout, y_hold))
        return model

    def to_dict(self) -> dict:
        v = self.validation
        return {"device_key": self.device_key, "coefficients": self.coefficients,
                "intercept": self.intercept, "fit_count": self.fit_count,
                "validation": None if v is None else {
                    "model": dataclasses.asdict(v.model),
                    "baselines": [dataclasses.asdict(b) for b in v.baselines]}}

    @classmethod
    def from_dict(cls, d: dict) -> LatencyModel:
        v = d.get("validation")
        validation = None if v is None else Validation(
            Errors(**v["model"]), tuple(Errors(**b) for b in v["baselines"]))
        return cls(d["device_key"], d["coefficients"], d["intercept"], validation,
                   d.get("fit_count", 0))

    def save(self, path: str) -> None:
        from keras_mobile.files import atomic_path  # noqa: PLC0415

        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> LatencyModel:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def _distinct(space, rng, n: int, keys: set) -> list:
    """``n`` random archs of ``space`` not in ``keys`` (added to it)."""
    archs, tries = [], 0
    while len(archs) < n:
        arch = space.random(rng)
        tries += 1
        if arch.key not in keys:
            keys.add(arch.key)
            archs.append(arch)
        elif tries > 50 * n + 100:
            raise ValueError(f"The space holds fewer than the {n} distinct networks asked for.")
    return archs


def _baselines(model, train, y_train, holdout, y_hold) -> tuple[Errors, ...]:
    """MACs-only models fitted on the same networks: ``a * MACs`` (one constant, the
    usual FLOPs proxy) and ``a * MACs + b``."""
    m_train = np.array([sum(model.features(a)[k] for k in _SCALE) for a in train])
    m_hold = np.array([sum(model.features(a)[k] for k in _SCALE) for a in holdout])
    # a * MACs, least relative squares: a = sum(m / y) / sum((m / y) ** 2)
    r = m_train / y_train
    a = float(np.sum(r) / np.sum(r * r))
    coef, b = _solve(m_train[:, None], y_train)
    return (Errors.of("MACs only (a·MACs)", a * m_hold, y_hold),
            Errors.of("MACs + constant (a·MACs + b)", coef[0] * m_hold + b, y_hold))
