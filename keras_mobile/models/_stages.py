"""The one stage loop every family runs: block names, strides, the ``P{level}``
feature markers and the drop-path schedule, derived once from a family's table.

A family turns its table into a :func:`plan` (one :class:`Step` per block) and
hands :func:`run` its block function; the family keeps its table and its block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from keras_mobile.models import _common

# How the drop-path rate grows from 0 at the first block:
#   "keras": rate * i / n (keras.applications' and the official EfficientNet's
#            drop_connect_rate; the last block stays just under ``rate``);
#   "linspace": numpy.linspace(0, rate, n) (timm, the official EMO; the last block gets ``rate``).
DROP_PATH_SCHEDULES = ("keras", "linspace")


class Step(NamedTuple):
    """One block of the stage loop."""

    name: str  # "block{stage}{letter}": "block3b" is the second block of stage 3
    stage: int  # 0-based index into the family's table of stages
    repeat: int  # 0 for the stage's first block
    index: int  # 0-based over the whole network
    strides: int
    drop_rate: float


def repeated(stages) -> list[list[int]]:
    """Per-stage block strides for tables of ``(repeats, strides)`` rows: the first
    block of a stage has the stage's stride, its repeats stride 1."""
    return [[stage.strides] + [1] * (stage.repeats - 1) for stage in stages]


def grouped(rows, key: Callable) -> list[list[int]]:
    """Per-stage block strides for tables of one row per block (MobileNetV3's
    bnecks): a stage is a run of consecutive rows with equal ``key(row)``."""
    stages = []
    for i, row in enumerate(rows):
        if i and key(row) == key(rows[i - 1]):
            stages[-1].append(row.strides)
        else:
            stages.append([row.strides])
    return stages


def plan(strides: Sequence[Sequence[int]], *, drop_path_rate: float = 0.0,
         schedule: str = "keras") -> list[Step]:
    """The blocks of a network whose stage ``s`` has blocks of ``strides[s]``."""
    if schedule not in DROP_PATH_SCHEDULES:
        raise ValueError(f"schedule must be one of {DROP_PATH_SCHEDULES}. "
                         f"Received: schedule={schedule!r}.")
    total = sum(len(stage) for stage in strides)
    if schedule == "linspace":
        rates = [float(r) for r in np.linspace(0, drop_path_rate, total)]
    else:
        rates = [drop_path_rate * i / total for i in range(total)]
    steps = []
    for s, stage in enumerate(strides):
        for r, stride in enumerate(stage):
            index = len(steps)
            steps.append(Step(f"block{s + 1}{chr(97 + r)}", s, r, index, stride, rates[index]))
    return steps


def run(x, steps: Sequence, block: Callable, stride: int = 2):
    """Call ``block(x, step)`` for every step (a :class:`Step`, or a family's
    resolved block made from one: anything with ``strides``), marking each map
    that a block is about to downsample (total stride >= 4) as its pyramid
    level ``P{log2(stride)}``.

    Returns ``(x, stride)``: the last map (not yet marked: families end with their
    own layers before :func:`keras_mobile.models._common.feature_marker`) and its
    total stride.
    """
    for step in steps:
        x, stride = _common.next_level(x, stride, step.strides)
        x = block(x, step)
    return x, stride
