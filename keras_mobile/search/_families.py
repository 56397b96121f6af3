"""Each family's table, edited by an :class:`~keras_mobile.search.space.Arch`, and built
by the family's own builder (the paper's network when nothing is edited)."""

from __future__ import annotations

from keras_mobile.models import _common, emo, mobilenet_v2, mobilenet_v3, mobilenext


def _depth(paper: int, offset: int) -> int:
    return max(1, paper + offset)


def _v3_stages(rows) -> list[list]:
    """MobileNetV3's rows grouped into stages (runs of equal output width)."""
    stages = []
    for i, row in enumerate(rows):
        if i and row.filters == rows[i - 1].filters:
            stages[-1].append(row)
        else:
            stages.append([row])
    return stages


def _paper_tables(family: str, variant: str | None):
    """The paper's table as a list of per-stage entries."""
    if family == "MobileNetV2":
        return list(mobilenet_v2.STAGES)
    if family == "MobileNeXt":
        return list(mobilenext.STAGES)
    if family.startswith("MobileNetV3"):
        return _v3_stages(mobilenet_v3.STAGES[family[len("MobileNetV3"):].lower()])
    return list(emo.STAGES)


def paper_genes(family: str, variant: str | None) -> dict:
    """The paper's kernel (and EMO's attention) of each searchable stage."""
    from keras_mobile.search.space import FAMILIES  # noqa: PLC0415

    stages = _paper_tables(family, variant)
    searchable = FAMILIES[family]["searchable"]
    if family.startswith("MobileNetV3"):
        kernels = [stages[s][0].kernel_size for s in searchable]
    else:
        kernels = [stages[s].kernel_size for s in searchable]
    attention = [stages[s].attention for s in searchable] if family == "EMO" else []
    return {"kernels": kernels, "attention": attention}


def _genes(arch):
    spec = arch.build_spec()
    return zip(arch.searchable, spec["depth_offsets"], spec["expansion_scales"],
               spec["kernels"], spec["attention"] or [None] * len(arch.searchable), strict=True)


def _v2_table(arch):
    stages = list(mobilenet_v2.STAGES)
    for s, offset, scale, kernel, _ in _genes(arch):
        st = stages[s]
        stages[s] = st._replace(repeats=_depth(st.repeats, offset), kernel_size=kernel,
                                expand_ratio=st.expand_ratio * scale)
    return tuple(stages)


def _v3_rows(arch):
    stages = _v3_stages(mobilenet_v3.STAGES[arch.family[len("MobileNetV3"):].lower()])
    for s, offset, scale, kernel, _ in _genes(arch):
        rows, depth = stages[s], _depth(len(stages[s]), offset)
        rows = rows[:depth] + [rows[-1]._replace(strides=1)] * (depth - len(rows))
        stages[s] = [r._replace(kernel_size=kernel, expand_ratio=r.expand_ratio * scale)
                     for r in rows]
    return tuple(row for rows in stages for row in rows)


def _mnext_table(arch):
    stages = list(mobilenext.STAGES)
    for s, offset, scale, kernel, _ in _genes(arch):
        st = stages[s]
        stages[s] = st._replace(repeats=_depth(st.repeats, offset), kernel_size=kernel,
                                bottleneck_scale=scale)
    return tuple(stages)


def _emo_tables(arch):
    variant, stages = emo.VARIANTS[arch.variant], list(emo.STAGES)
    depths, ratios = list(variant.depths), list(variant.expand_ratios)
    for s, offset, scale, kernel, attention in _genes(arch):
        depths[s] = _depth(depths[s], offset)
        ratios[s] = ratios[s] * scale
        stages[s] = stages[s]._replace(kernel_size=kernel, attention=attention)
    return variant._replace(depths=tuple(depths), expand_ratios=tuple(ratios)), tuple(stages)


def build(arch, *, classes, include_top, classifier_activation, include_preprocessing, name):
    """``arch`` as a Keras model, by its family's builder."""
    edited = not arch.is_paper()
    name = name or (f"{arch.family.lower()}_search_{arch.key}" if edited else None)
    args = _common.AppArgs(include_top, None, None, (arch.resolution, arch.resolution, 3), None,
                           classes, classifier_activation, include_preprocessing, name)
    if arch.family == "MobileNetV2":
        return mobilenet_v2._build(args, arch.width, stages=_v2_table(arch))
    if arch.family.startswith("MobileNetV3"):
        return mobilenet_v3._build(args, arch.family[len("MobileNetV3"):].lower(), arch.width,
                                   False, 0.2, rows=_v3_rows(arch))
    if arch.family == "MobileNeXt":
        return mobilenext._build(args, arch.width, arch.identity_multiplier,
                                 stages=_mnext_table(arch))
    variant, stages = _emo_tables(arch)
    return emo._build(args, arch.variant, window_size=7, attn_pre=True, drop_path_rate=None,
                      variant=variant, stages=stages)
