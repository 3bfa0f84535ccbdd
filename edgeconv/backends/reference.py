"""The reference backend: the numpy int8 golden reference (and the float reference). Always available."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.backends import check_input
from edgeconv.core import reference
from edgeconv.plan.targets import Target
from edgeconv.quant.golden import FAMILIES, run_int8

# the golden runtime emulated for each rounding family (htp: qnn_htp, quant/htp.py)
GOLDEN_RUNTIME = {"tflite": FAMILIES["tflite"], "fp32": FAMILIES["fp32"], "htp": FAMILIES["htp"]}


class ReferenceBackend:
    def __init__(self, target: Target):
        self.target = target
        self.golden_runtime = GOLDEN_RUNTIME[target.rounding]

    def unavailable(self) -> str | None:
        return None

    def run(self, build: BuiltModel, x_q: np.ndarray) -> np.ndarray:
        x_q = check_input(build, x_q, "int8")
        return run_int8(build.analysis, build.qparams, x_q, self.golden_runtime)[build.analysis.model.output]

    def run_layers(self, build: BuiltModel, x_q: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        x_q = check_input(build, x_q, "int8")
        everything = run_int8(build.analysis, build.qparams, x_q, self.golden_runtime, keep_all=True)
        return {name: everything[name] for name in layers}

    def run_float(self, build: BuiltModel, x: np.ndarray) -> np.ndarray:
        return reference.run(build.analysis, build.weights, x)[build.analysis.model.output]


def create(target: Target) -> ReferenceBackend:
    return ReferenceBackend(target)
