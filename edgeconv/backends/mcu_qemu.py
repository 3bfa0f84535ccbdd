"""The mcu-m4 / mcu-m7 backends: the int8 .tflite as TFLite Micro firmware on an emulated Cortex-M.

Unlike `mcu` (TFLM's Python interpreter on the x86-64 host, reference kernels, 64-bit arena),
this compiles the model into firmware (edgeconv/firmware) against the cached TFLM library for
the profile's core and kernels (options.cpu, options.kernels: CMSIS-NN by default) and runs it
under qemu-system-arm (device/cortex_m.py). Same rounding family as TFLM on the host (tflite):
compared with the tflm golden, exactly. `run_layers` builds the firmware of the artifact with
the requested layers made graph outputs (export.expose), so the CMSIS-NN kernels are checked
layer by layer too. The float artifact is not run (int8-only target).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeconv.artifacts.folder import BuiltModel
from edgeconv.backends import check_input, layer_outputs
from edgeconv.core.errors import EdgeconvError
from edgeconv.plan.targets import Target


class McuQemuBackend:
    def __init__(self, target: Target):
        self.target = target
        self.cpu = str(target.option("cpu", "cortex-m4"))
        self.kernels = str(target.option("kernels", "cmsis_nn"))
        self.last_run: Any = None  # device.cortex_m.FirmwareRun of the latest run (arena, instructions)

    def unavailable(self) -> str | None:
        from edgeconv.device.cortex_m import QEMU_MACHINES
        from edgeconv.firmware import library

        if self.cpu not in QEMU_MACHINES:
            return (
                f"target {self.target.name}: no QEMU board for {self.cpu} (expected one of {', '.join(QEMU_MACHINES)})"
            )
        if shutil.which("qemu-system-arm") is None:
            return f"target {self.target.name}: qemu-system-arm not found; install it with: apt-get install qemu-system-arm"
        try:
            library.find(self.cpu, self.kernels)
        except EdgeconvError as err:
            return f"target {self.target.name}: {err}"
        return None

    def _run(self, build: BuiltModel, model: bytes, x_q: np.ndarray, exposed: bool, label: str) -> list[np.ndarray]:
        from edgeconv.device.cortex_m import build_firmware, run_elf

        folder = build_firmware(model, self.cpu, self.kernels, label, analysis=build.analysis, exposed=exposed)
        run = run_elf(folder / "firmware.elf", self.cpu, x_q)
        self.last_run = run
        return [y.reshape(x_q.shape[0], -1) for y in run.outputs]

    @staticmethod
    def _shape(y: np.ndarray, like: tuple[int, ...]) -> np.ndarray:
        return y.reshape((y.shape[0], *like))

    def run(self, build: BuiltModel, x_q: np.ndarray) -> np.ndarray:
        x_q = check_input(build, x_q, "int8")
        path = build.artifact("int8_tflite")
        y = self._run(build, path.read_bytes(), x_q, False, path.name)[0]
        w, h, c = build.analysis.layers[-1].out_shape
        return y.reshape(x_q.shape[0], h, w, c) if w * h > 1 else y.reshape(x_q.shape[0], 1, 1, -1)

    def run_layers(self, build: BuiltModel, x_q: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        from edgeconv.export.expose import tflite_with_outputs

        x_q = check_input(build, x_q, "int8")
        path = build.artifact("int8_tflite")
        shapes = {layer.name: info.out_shape for layer, info in zip(build.analysis.model.layers, build.analysis.layers)}
        by_tensor = {build.tensor_name("int8_tflite", name): name for name in shapes}

        def run_exposed(names: list[str]) -> dict[str, np.ndarray]:
            content = tflite_with_outputs(path.read_bytes(), names)
            ys = self._run(build, content, x_q, True, f"{path.name} with {len(names)} layer outputs")
            got = {}
            for name, y in zip(names, ys):
                w, h, c = shapes[by_tensor.get(name, name)]
                got[name] = y.reshape(x_q.shape[0], h, w, c) if w * h > 1 else y.reshape(x_q.shape[0], 1, 1, -1)
            return got

        return layer_outputs(build, x_q, layers, run_exposed, artifact="int8_tflite")

    def run_float(self, build: BuiltModel, x: np.ndarray) -> None:
        return None


def create(target: Target) -> McuQemuBackend:
    return McuQemuBackend(target)
