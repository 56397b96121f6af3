"""The search: the most accurate network of a space under a latency budget on a device.

Optuna's TPE sampler with a latency constraint (``Trial.set_constraint``: predicted ms -
budget) proposes networks; a network predicted over budget is not trained (its trial
records the constraint only); the others get short training. Every trial is stored as
it completes in an Optuna journal file, and every training run checkpoints in its own
folder, so a killed search restarts where it stopped. The final picks are always
re-measured on the device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable

from keras_mobile.search.device import Device, Measurements, time_archs
from keras_mobile.search.latency import LatencyModel
from keras_mobile.search.space import Arch, Space


@dataclasses.dataclass
class Candidate:
    """One trained network of a search."""

    arch: Arch
    predicted_ms: float
    accuracy: float
    trial: int
    measured_ms: float | None = None  # re-measured on the device (final picks)

    def build(self, classes: int = 10, **kwargs):
        """The network as an ordinary keras_mobile model (random weights)."""
        return self.arch.build(classes=classes, **kwargs)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "arch": self.arch.to_dict(), "name": self.arch.name}


@dataclasses.dataclass
class SearchResult:
    """What :func:`find` returns; ``best`` is the most accurate re-measured pick within
    the budget (None when no pick kept to it on the device)."""

    budget_ms: float
    device_key: str
    latency_error: float  # the latency model's stated error
    candidates: list  # every trained network, most accurate first
    picks: list  # the re-measured top ones
    best: Candidate | None
    trials: int  # trials sampled (trained or rejected by the constraint)
    workdir: str

    @property
    def pareto(self) -> list:
        """Trained networks not beaten in both accuracy and predicted latency."""
        front, fastest = [], float("inf")
        for c in sorted(self.candidates, key=lambda c: (-c.accuracy, c.predicted_ms)):
            if c.predicted_ms < fastest:
                front.append(c)
                fastest = c.predicted_ms
        return front

    def to_dict(self) -> dict:
        return {"budget_ms": self.budget_ms, "device_key": self.device_key,
                "latency_error": self.latency_error, "trials": self.trials,
                "best": None if self.best is None else self.best.to_dict(),
                "picks": [c.to_dict() for c in self.picks],
                "candidates": [c.to_dict() for c in self.candidates]}


def _check(space, device, budget_ms, trials, top_k, epochs):
    if not isinstance(space, Space):
        raise TypeError(f"space must be a keras_mobile.search.Space. Received: {space!r}")
    if not isinstance(device, Device):
        raise TypeError(f"device must be a keras_mobile.search.Device. Received: {device!r}")
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or budget_ms <= 0:
        raise ValueError(f"budget_ms must be a positive number of milliseconds. "
                         f"Received: budget_ms={budget_ms!r}")
    for name, value in (("trials", trials), ("top_k", top_k), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")


def fastest(space: Space) -> list[Arch]:
    """Per family, the space's least-work network: smallest resolution, width (EMO:
    variant), depths and expansions, 3x3 kernels, no attention."""
    from keras_mobile.search.space import FAMILIES  # noqa: PLC0415

    archs = []
    for family in space.families:
        n = len(FAMILIES[family]["searchable"])
        variant = min(space.emo_variants, key=lambda v: int(v[:-1])) if family == "EMO" \
            else None
        archs.append(Arch(
            family, min(space.resolutions), 1.0 if family == "EMO" else min(space.widths),
            variant, min(space.identity_multipliers) if family == "MobileNeXt" else 1.0,
            depth_offsets=(min(space.depth_offsets),) * n,
            expansion_scales=(min(space.expansion_scales),) * n,
            kernels=tuple(min(space.kernel_choices(family, variant, i)) for i in range(n)),
            attention=(False,) * n if family == "EMO" else ()))
    return archs


def check_budget(space: Space, device: Device, budget_ms: float,
                 cache_dir: str | None = None) -> float:
    """Measures the space's fastest networks (:func:`fastest`; a few conversions, cached)
    and fails with a clear message when ``budget_ms`` is below all of them. Returns the
    fastest measured ms."""
    archs = fastest(space)
    measured = Measurements(device, cache_dir).measure(archs)
    best = min(range(len(archs)), key=measured.__getitem__)
    if budget_ms < measured[best]:
        raise ValueError(f"budget_ms={budget_ms} is below the fastest network of the space on "
                         f"{device!r}: {archs[best].name} measures {measured[best]:.3f} ms. "
                         "Raise the budget or add smaller widths / resolutions to the space.")
    return measured[best]


def _study_name(space, device, budget_ms, dataset, epochs, seed, train_steps) -> str:
    text = json.dumps([dataclasses.asdict(space), device.key, budget_ms, dataset, epochs, seed,
                       train_steps],
                      sort_keys=True, default=str)
    return f"search-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def find(space: Space, device: Device, budget_ms: float, *,
         dataset: str = "keras_mobile_shapes_hard", trials: int = 20, epochs: int = 3,
         train_steps: int = 0,
         latency: LatencyModel | None = None, workdir: str = "runs/search",
         data_dir: str | None = None, seed: int = 0, top_k: int = 3,
         accuracy: Callable | None = None, cache_dir: str | None = None,
         n_startup_trials: int | None = None, progress: Callable | None = print) -> SearchResult:
    """The most accurate network of ``space`` under ``budget_ms`` on ``device``.

    Args:
        space, device: what to search and where latency counts.
        budget_ms: the latency budget (the device's ms per image).
        dataset: tfds name the candidates train on (default: the hard generated set).
        trials: how many networks within the budget are trained (over-budget proposals
            are rejected by the latency model without training and do not count).
        epochs: short-training epochs per candidate (``train_steps``: at most that many
            steps in all, 0: every epoch).
        latency: a fitted :class:`LatencyModel` of ``device`` (default: fitted now, from
            the device's cached measurements plus what is missing).
        workdir: the study's journal, the candidates' runs and ``result.json``; run again
            with the same arguments and it resumes.
        top_k: how many of the most accurate candidates are re-measured on the device.
        accuracy: ``(arch, model_dir, seed) -> accuracy`` instead of short training.

    Raises:
        ValueError: bad arguments, an unreachable device, or a budget below the fastest
            network of the space: before any training.
    """
    import optuna  # noqa: PLC0415

    _check(space, device, budget_ms, trials, top_k, epochs)
    say = progress or (lambda *_: None)
    device.check()
    check_budget(space, device, budget_ms, cache_dir)
    if latency is None:
        latency = LatencyModel.fit(space, device, cache_dir=cache_dir, progress=progress)
    if latency.device_key != device.key:
        raise ValueError(f"latency was fitted on {latency.device_key}, not on {device.key}.")
    error = latency.error if latency.validation is not None else float("nan")
    if accuracy is None:
        from keras_mobile.search import proxies  # noqa: PLC0415

        def accuracy(arch, model_dir, seed):
            return proxies.train(arch, model_dir=model_dir, dataset=dataset,
                                 data_dir=data_dir, epochs=epochs, seed=seed,
                                 max_steps=train_steps)

    os.makedirs(workdir, exist_ok=True)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(os.path.join(workdir, "study.journal")))
    # Constrained TPE: each trial sets its constraint (predicted ms - budget, feasible <= 0).
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials or max(2, min(10, trials // 2)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = _study_name(space, device, budget_ms, dataset, epochs, seed, train_steps)
    study = optuna.create_study(study_name=name,
                                storage=storage, sampler=sampler, direction="maximize",
                                load_if_exists=True)
    _retry_interrupted(study)

    def trained():
        return sum(1 for t in study.get_trials(deepcopy=False)
                   if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("trained"))

    def objective(trial):
        arch = space.suggest(trial)
        predicted = latency.predict(arch)
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("predicted_ms", predicted)
        trial.set_constraint("latency_ms", predicted - budget_ms)
        if predicted > budget_ms:
            trial.set_user_attr("trained", False)
            return 0.0
        earlier = [t.value for t in study.get_trials(deepcopy=False)
                   if t.user_attrs.get("trained") and t.user_attrs["arch"] == arch.to_dict()]
        if earlier:  # proposed again: its accuracy, without counting as a new candidate
            trial.set_user_attr("trained", False)
            return earlier[0]
        acc = accuracy(arch, os.path.join(workdir, "runs", f"{arch.key}-e{epochs}-s{seed}"), seed)
        trial.set_user_attr("trained", True)
        say(f"trial {trial.number}: {arch.name} predicted {predicted:.3f} ms, "
            f"accuracy {acc:.4f} ({trained() + 1}/{trials} trained)")
        return acc

    limit = 50 * trials  # proposals, so a space mostly over budget still ends
    while trained() < trials and len(study.trials) < limit:
        study.optimize(objective, n_trials=1)
    candidates = _candidates(study)
    if not candidates:
        raise ValueError(f"No network of the space was predicted within budget_ms={budget_ms} "
                         f"in {len(study.trials)} proposals.")
    picks = candidates[:top_k]
    measured, _ = time_archs(device, [c.arch for c in picks])  # fresh, not the table
    for c, ms in zip(picks, measured, strict=True):
        c.measured_ms = ms
    within = [c for c in picks if c.measured_ms <= budget_ms]
    result = SearchResult(budget_ms, device.key, error, candidates, picks,
                          max(within, key=lambda c: c.accuracy) if within else None,
                          len(study.trials), workdir)
    from keras_mobile.files import atomic_path  # noqa: PLC0415

    with atomic_path(os.path.join(workdir, "result.json")) as tmp, open(tmp, "w") as f:
        json.dump(result.to_dict(), f, indent=1)
    return result


def _retry_interrupted(study) -> None:
    """Trials left RUNNING by a killed process: failed, and their networks queued again
    (their training resumes from its checkpoint)."""
    import optuna  # noqa: PLC0415

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, skip_if_exists=False)


def _candidates(study) -> list[Candidate]:
    import optuna  # noqa: PLC0415

    best = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if not t.user_attrs.get("trained"):
            continue
        c = Candidate(Arch.from_dict(t.user_attrs["arch"]), t.user_attrs["predicted_ms"],
                      float(t.value), t.number)
        if c.arch.key not in best or c.accuracy > best[c.arch.key].accuracy:
            best[c.arch.key] = c
    return sorted(best.values(), key=lambda c: (-c.accuracy, c.predicted_ms))
