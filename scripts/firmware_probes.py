"""Do TFLM's CMSIS-NN kernels and its reference kernels ever give different numbers? Probe models
with the shapes where CMSIS-NN takes other code paths (odd channel counts that miss its 4-channel
SIMD blocks, depthwise 3x3 / 5x5 with stride 2, SAME-padded average and max pooling, dense
layers of odd sizes, softmax over 7 classes), run as firmware on the emulated Cortex-M4 with
both kernel sets, each layer compared with the tflm golden.

    python scripts/firmware_probes.py [--samples 8]

Needs both cached libraries (scripts/build_tflm.sh --kernels cmsis_nn and --kernels reference).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from edgeconv.artifacts.build import BuildRequest, run_build
from edgeconv.artifacts.folder import load_build
from edgeconv.backends import get_backend, require
from edgeconv.plan.targets import load_target
from edgeconv.quant.golden import run_int8
from edgeconv.quant.quantize import quantize_input

PROBES = {
    "odd_channels_dw": """
name = "probe_odd_dw"
input = [15, 11, 5]
[[layers]]
name = "conv"
op = "conv2d"
filters = 7
kernel = 3
stride = 2
activation = "relu"
[[layers]]
name = "dw3s2"
op = "depthwise_conv2d"
kernel = 3
stride = 2
activation = "relu"
[[layers]]
name = "pw"
op = "conv2d"
filters = 9
kernel = 1
[[layers]]
name = "dw5"
op = "depthwise_conv2d"
kernel = 5
activation = "relu"
[[layers]]
name = "gap"
op = "global_avg_pool"
[[layers]]
name = "fc13"
op = "dense"
units = 13
activation = "relu"
[[layers]]
name = "fc7"
op = "dense"
units = 7
[[layers]]
name = "softmax"
op = "softmax"
""",
    "padded_pools": """
name = "probe_pools"
input = [13, 9, 3]
[[layers]]
name = "conv"
op = "conv2d"
filters = 6
kernel = 3
activation = "relu"
[[layers]]
name = "avg3same"
op = "avg_pool"
pool = 3
stride = 1
padding = "same"
[[layers]]
name = "max3s2same"
op = "max_pool"
pool = 3
stride = 2
padding = "same"
[[layers]]
name = "avg2s2"
op = "avg_pool"
pool = 2
stride = 2
[[layers]]
name = "fc5"
op = "dense"
units = 5
[[layers]]
name = "softmax"
op = "softmax"
""",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8)
    ns = parser.parse_args()
    base = load_target("mcu-m4")
    with tempfile.TemporaryDirectory() as tmp:
        for probe, text in PROBES.items():
            recipe = Path(tmp) / f"{probe}.toml"
            recipe.write_text(text)
            run_build(BuildRequest(recipe=str(recipe), out=str(Path(tmp) / probe), calib_samples=16))
            build = load_build(Path(tmp) / probe)
            spec = build.analysis.model.input
            x = np.random.default_rng(3).standard_normal((ns.samples, spec.height, spec.width, spec.channels))
            x_q = quantize_input(x.astype(np.float32), build.qparams.activations["input"])
            want = run_int8(build.analysis, build.qparams, x_q, "tflm", keep_all=True)
            layers = [layer.name for layer in build.analysis.model.layers]
            outs = {}
            for kernels in ("cmsis_nn", "reference"):
                options = dict(base.options) | {"kernels": kernels}
                target = dataclasses.replace(base, options=tuple(sorted(options.items())))
                got = require(get_backend(target)).run_layers(build, x_q, layers)
                outs[kernels] = got
                worst = {n: int(np.abs(got[n].astype(int) - want[n].reshape(got[n].shape)).max()) for n in layers}
                print(f"{probe} / {kernels}: max LSB vs tflm golden per layer {worst}")
            diff = max(int(np.abs(outs["cmsis_nn"][n].astype(int) - outs["reference"][n]).max()) for n in layers)
            print(f"{probe}: CMSIS-NN vs reference kernels: max {diff} LSB over {len(layers)} layers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
