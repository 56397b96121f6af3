"""Hardware-aware design: a search space of the papers' networks and their edits,
latency measured on a device and modelled, and a search for the most accurate
network under a latency budget (docs/search.md).

    space = keras_mobile.search.Space(families=("MobileNetV2", "MobileNeXt"))
    device = keras_mobile.search.Device("host", threads=1, mode="int8")
    latency = keras_mobile.search.LatencyModel.fit(space, device)  # measured, cached
    print(latency.validate())          # held-out error vs the MACs-only baseline
    result = keras_mobile.search.find(space, device, budget_ms=0.3, latency=latency)
    model = result.best.build(classes=10)
"""

from keras_mobile.search.device import Device, Measurements
from keras_mobile.search.find import Candidate, SearchResult, check_budget, fastest, find
from keras_mobile.search.latency import LatencyModel, Validation
from keras_mobile.search.space import EMO_VARIANTS, FAMILIES, Arch, Space

__all__ = ["EMO_VARIANTS", "FAMILIES", "Arch", "Candidate", "Device", "LatencyModel",
           "Measurements", "SearchResult", "Space", "Validation", "check_budget", "fastest",
           "find"]
