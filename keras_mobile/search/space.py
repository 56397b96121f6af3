"""The search space: the papers' networks and their per-stage edits.

An :class:`Arch` is one point: a family's own table (MobileNetV2's Table 2,
MobileNetV3's bnecks, MobileNeXt's official ``cfgs``, an EMO variant) at a width
multiplier and an input resolution, with each searchable stage's depth, expansion
and kernel edited (and, per family, MobileNeXt's identity tensor multiplier and EMO's
attention per stage). Every edit is relative to the paper's table, so the papers'
models are points of the space (:meth:`Arch.is_paper`): an unedited ``Arch`` builds
exactly the registry's model. :meth:`Arch.build` calls the family's own builder with
the edited table, so a found network is an ordinary keras_mobile model.

:class:`Space` holds the choices; Optuna samples it (:meth:`Space.suggest`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence

# Family -> what its table looks like to the search. ``stages``: how many stages the
# paper's table has; ``searchable``: the stages whose depth / expansion / kernel may change
# (the first and last stages stay: their widths feed the stem and head unchanged).
FAMILIES = {
    "MobileNetV2": dict(stages=7, searchable=(1, 2, 3, 4, 5)),
    "MobileNetV3Small": dict(stages=5, searchable=(1, 2, 3, 4)),
    "MobileNetV3Large": dict(stages=6, searchable=(1, 2, 3, 4, 5)),
    "MobileNeXt": dict(stages=8, searchable=(2, 3, 4, 5, 6)),
    "EMO": dict(stages=4, searchable=(0, 1, 2, 3)),
}
EMO_VARIANTS = ("1M", "2M", "5M", "6M")
_EMO_ATTENTION_STAGES = (1, 2, 3)  # stage 1 (stride 8) may attend too; stage 0 never


@dataclasses.dataclass(frozen=True)
class Arch:
    """One network of the space.

    ``depth_offsets``, ``expansion_scales``, ``kernels`` and ``attention`` have one entry
    per searchable stage of the family (``FAMILIES[family]["searchable"]``); empty means
    the paper's. ``width`` is the width multiplier (alpha) of MobileNetV2/V3/MobileNeXt;
    EMO's width is its ``variant``. ``expansion_scales`` multiply the hidden width of
    every block of the stage: the expansion of inverted residuals and iRMBs, the
    bottleneck of sandglass blocks (rounded to a multiple of 8).
    """

    family: str
    resolution: int
    width: float = 1.0
    variant: str | None = None  # EMO: "1M", "2M", "5M", "6M"
    identity_multiplier: float = 1.0  # MobileNeXt
    depth_offsets: tuple[int, ...] = ()
    expansion_scales: tuple[float, ...] = ()
    kernels: tuple[int, ...] = ()
    attention: tuple[bool, ...] = ()  # EMO, stages 1..3

    def __post_init__(self):
        check_arch(self)

    @property
    def searchable(self) -> tuple[int, ...]:
        return FAMILIES[self.family]["searchable"]

    def paper(self) -> Arch:
        """The paper's network at this arch's width, variant and resolution."""
        return Arch(self.family, self.resolution, self.width, self.variant,
                    1.0 if self.family != "MobileNeXt" else self.identity_multiplier)

    def is_paper(self) -> bool:
        """No stage edited: the family's own network (MobileNeXt: any identity multiplier)."""
        return self.build_spec() == self.paper().build_spec()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> Arch:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - fields
        if unknown:
            raise ValueError(f"Unknown Arch fields: {sorted(unknown)}. Fields: {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def key(self) -> str:
        """A short stable id (hash of the normalized arch): cache keys, folder names."""
        text = json.dumps(self.build_spec(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """Human-readable: ``MobileNetV2-0.50@64``, with ``*`` when stages are edited."""
        size = self.variant if self.family == "EMO" else f"{self.width:.2f}"
        extra = f"-id{self.identity_multiplier:.2f}" if self.family == "MobileNeXt" and \
            self.identity_multiplier != 1.0 else ""
        return f"{self.family}-{size}{extra}@{self.resolution}{'' if self.is_paper() else '*'}"

    def build_spec(self) -> dict:
        """The resolved genes (defaults filled in): equal specs build equal networks."""
        n = len(self.searchable)
        defaults = _paper_genes(self.family, self.variant)
        return dict(family=self.family, resolution=self.resolution,
                    width=None if self.family == "EMO" else self.width,
                    variant=self.variant, identity=self.identity_multiplier,
                    depth_offsets=list(self.depth_offsets or (0,) * n),
                    expansion_scales=list(self.expansion_scales or (1.0,) * n),
                    kernels=list(self.kernels or defaults["kernels"]),
                    attention=list(self.attention or defaults["attention"]))

    def build(self, classes: int = 10, *, include_top: bool = True,
              classifier_activation="softmax", include_preprocessing: bool = True,
              name: str | None = None):
        """The Keras model (random weights): ``classes`` outputs, this arch's resolution."""
        from keras_mobile.search import _families  # noqa: PLC0415  (imports the builders)

        return _families.build(self, classes=classes, include_top=include_top,
                               classifier_activation=classifier_activation,
                               include_preprocessing=include_preprocessing, name=name)


def _paper_genes(family: str, variant: str | None) -> dict:
    """The paper's kernels and attention of the searchable stages."""
    from keras_mobile.search import _families  # noqa: PLC0415  (imports the builders)

    return _families.paper_genes(family, variant)


def _fail(message: str):
    raise ValueError(message)


def check_arch(arch: Arch) -> None:
    """One place for the checks of an Arch's fields (clear one-line errors)."""
    if arch.family not in FAMILIES:
        _fail(f"family must be one of {list(FAMILIES)}. Received: family={arch.family!r}")
    if isinstance(arch.resolution, bool) or not isinstance(arch.resolution, int) \
            or arch.resolution < 32:
        _fail(f"resolution must be an int >= 32. Received: resolution={arch.resolution!r}")
    if arch.family == "EMO":
        if arch.variant not in EMO_VARIANTS:
            _fail(f"EMO needs variant in {EMO_VARIANTS}. Received: variant={arch.variant!r}")
    elif arch.variant is not None:
        _fail(f"variant is EMO's; {arch.family} has width. Received: variant={arch.variant!r}")
    if not (isinstance(arch.width, (int, float)) and 0 < arch.width <= 2):
        _fail(f"width must be in (0, 2]. Received: width={arch.width!r}")
    if not 0 < arch.identity_multiplier <= 1:
        _fail(f"identity_multiplier must be in (0, 1]. Received: "
              f"identity_multiplier={arch.identity_multiplier!r}")
    n = len(FAMILIES[arch.family]["searchable"])
    for field in ("depth_offsets", "expansion_scales", "kernels", "attention"):
        value = getattr(arch, field)
        if value and len(value) != n:
            _fail(f"{field} needs one entry per searchable stage of {arch.family} ({n}). "
                  f"Received: {field}={value!r}")
    if arch.attention and arch.family != "EMO":
        _fail(f"attention is chosen per stage for EMO only. Received: family={arch.family!r}")
    if any(k not in (3, 5, 7) for k in arch.kernels):
        _fail(f"kernels must be 3, 5 or 7. Received: kernels={arch.kernels!r}")
    if any(s <= 0 for s in arch.expansion_scales):
        _fail(f"expansion_scales must be positive. Received: {arch.expansion_scales!r}")


def _choices(name: str, values, kind=(int, float), allow_empty: bool = False) -> tuple:
    values = tuple(values)
    if not values and not allow_empty:
        _fail(f"{name} needs at least one choice. Received: {name}=()")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind):
            _fail(f"{name} must hold {'/'.join(k.__name__ for k in kind)} values. "
                  f"Received: {name}={values!r}")
    if len(set(values)) != len(values):
        _fail(f"{name} has repeated choices. Received: {name}={values!r}")
    return values


@dataclasses.dataclass(frozen=True)
class Space:
    """The choices a search picks from; the defaults contain every paper's network.

    Args:
        families: any of :data:`FAMILIES`.
        resolutions: input sizes (square).
        widths: width multipliers of MobileNetV2/V3/MobileNeXt.
        emo_variants: EMO's sizes.
        depth_offsets: added to the paper's depth of each searchable stage (>= 1 kept).
        expansion_scales: multiply the paper's expansion of each searchable stage.
        kernels: depthwise kernel of each searchable stage (the paper's is always allowed).
        identity_multipliers: MobileNeXt's (the paper's 1, 1/2, 1/3, 1/6).
        attention: whether EMO's stages 1..3 may switch attention on / off.
    """

    families: tuple[str, ...] = tuple(FAMILIES)
    resolutions: tuple[int, ...] = (48, 56, 64)
    widths: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0)
    emo_variants: tuple[str, ...] = ("1M", "2M")
    depth_offsets: tuple[int, ...] = (-1, 0, 1)
    expansion_scales: tuple[float, ...] = (0.5, 0.75, 1.0)
    kernels: tuple[int, ...] = (3, 5)
    identity_multipliers: tuple[float, ...] = (1.0, 0.5, 1 / 3, 1 / 6)
    attention: bool = True

    def __post_init__(self):
        fams = _choices("families", self.families, (str,))
        for f in fams:
            if f not in FAMILIES:
                _fail(f"families must be among {list(FAMILIES)}. Received: {f!r}")
        res = _choices("resolutions", self.resolutions, (int,))
        if min(res) < 32:
            _fail(f"resolutions must be >= 32. Received: resolutions={res!r}")
        _choices("widths", self.widths)
        if "EMO" in fams:
            for v in _choices("emo_variants", self.emo_variants, (str,)):
                if v not in EMO_VARIANTS:
                    _fail(f"emo_variants must be among {EMO_VARIANTS}. Received: {v!r}")
        offsets = _choices("depth_offsets", self.depth_offsets, (int,))
        scales = _choices("expansion_scales", self.expansion_scales)
        _choices("kernels", self.kernels, (int,))
        _choices("identity_multipliers", self.identity_multipliers)
        if 0 not in offsets or 1.0 not in scales:
            _fail("depth_offsets must contain 0 and expansion_scales 1.0, so that the "
                  f"papers' networks are in the space. Received: depth_offsets={offsets!r}, "
                  f"expansion_scales={scales!r}")
        if "MobileNeXt" in fams and 1.0 not in self.identity_multipliers:
            _fail("identity_multipliers must contain 1.0 (the paper's MobileNeXt). "
                  f"Received: {self.identity_multipliers!r}")

    def papers(self, families: Sequence[str] | None = None) -> list[Arch]:
        """Every paper network of the space: each family at each width (EMO: variant)
        and resolution (MobileNeXt also at each identity multiplier)."""
        archs = []
        for family in families or self.families:
            for r in self.resolutions:
                if family == "EMO":
                    archs += [Arch("EMO", r, variant=v) for v in self.emo_variants]
                elif family == "MobileNeXt":
                    archs += [Arch(family, r, w, identity_multiplier=m)
                              for w in self.widths for m in self.identity_multipliers]
                else:
                    archs += [Arch(family, r, w) for w in self.widths]
        return archs

    def kernel_choices(self, family: str, variant: str | None, stage: int) -> tuple[int, ...]:
        """The space's kernels plus the paper's own for this stage."""
        paper = _paper_genes(family, variant)["kernels"][stage]
        return tuple(sorted(set(self.kernels) | {paper}))

    def suggest(self, trial) -> Arch:
        """An Arch from an Optuna trial (define-by-run: a family's stages are its own
        parameters, named ``{family}.s{stage}.depth`` ...)."""
        family = trial.suggest_categorical("family", list(self.families))
        resolution = trial.suggest_categorical("resolution", list(self.resolutions))
        width, variant, identity = 1.0, None, 1.0
        if family == "EMO":
            variant = trial.suggest_categorical("emo_variant", list(self.emo_variants))
        else:
            width = trial.suggest_categorical(f"{family}.width", list(self.widths))
        if family == "MobileNeXt":
            identity = trial.suggest_categorical("identity_multiplier",
                                                 list(self.identity_multipliers))
        genes = {"depth_offsets": [], "expansion_scales": [], "kernels": [], "attention": []}
        paper_attention = _paper_genes(family, variant)["attention"]
        for i, stage in enumerate(FAMILIES[family]["searchable"]):
            prefix = f"{family}.s{stage}"
            genes["depth_offsets"].append(trial.suggest_categorical(
                f"{prefix}.depth", list(self.depth_offsets)))
            genes["expansion_scales"].append(trial.suggest_categorical(
                f"{prefix}.expansion", list(self.expansion_scales)))
            genes["kernels"].append(trial.suggest_categorical(
                f"{prefix}.kernel", list(self.kernel_choices(family, variant, i))))
            if family == "EMO":
                allowed = [False, True] if self.attention and stage in _EMO_ATTENTION_STAGES \
                    else [paper_attention[i]]
                genes["attention"].append(trial.suggest_categorical(f"{prefix}.attention",
                                                                    allowed))
        return Arch(family, resolution, width, variant, identity,
                    **{k: tuple(v) for k, v in genes.items() if v})

    def random(self, rng) -> Arch:
        """A uniformly random Arch (``rng``: numpy Generator), for latency calibration."""
        class _Trial:  # suggest_categorical only, drawing with rng
            def suggest_categorical(self, name, choices):
                del name
                return choices[int(rng.integers(len(choices)))]

        return self.suggest(_Trial())
