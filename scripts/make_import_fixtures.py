"""Generate the import test fixtures in tests/data/import/ (ONNX files + source outputs).

Run once, in a venv of its own (PyTorch and TensorFlow are heavy; the tests never import them):

    python -m venv /work/venvs/fixtures && . /work/venvs/fixtures/bin/activate
    pip install torch==2.13.0 onnx onnxscript onnxruntime numpy tensorflow tf2onnx
    python scripts/make_import_fixtures.py            # writes tests/data/import/

Every fixture NAME has NAME.onnx (dynamo's default export also leaves NAME.onnx.data) and
NAME.npz with
  inputs   float32 (S, ...) seeded inputs, S samples stacked on the batch axis, in the
           source file's own input layout (NCHW for PyTorch, NHWC for Keras via tf2onnx)
  outputs  the source framework's outputs on those inputs, one sample at a time, stacked
           (PyTorch for torch fixtures, Keras for the tf2onnx one, ONNX Runtime for the
           ORT-quantized QDQ file, whose source framework is ORT itself)
  float_outputs  (QDQ fixture only) the float model's outputs the QDQ file was made from
and fixtures.json lists each fixture: file, source exporter, ops in the file, description.
Weights and BatchNorm statistics are seeded and non-trivial (BN running statistics are
randomized, so BN folding is really exercised). Each file is well under 200 KB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

SEED = 20261203
SAMPLES = 4
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "import"


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging

    logging.getLogger("torch").setLevel(logging.ERROR)


# ---------------------------------------------------------------- PyTorch models


def torch_models():
    """(name, module, input shape, exporter, description) for every PyTorch fixture."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def bn(c):
        return nn.BatchNorm2d(c)

    class ConvBnRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn(8), nn.ReLU())

        def forward(self, x):
            return self.c1(x)

    class Stride2Pad1(nn.Module):
        # PyTorch's usual downsampling conv: 3x3, stride 2, padding=1 on odd and even sizes
        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
            self.c2 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), bn(8), nn.ReLU())

        def forward(self, x):
            return self.c2(self.c1(x))

    class DepthwiseSeparable(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn(8), nn.ReLU())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), bn(8), nn.ReLU())
            self.pw = nn.Sequential(nn.Conv2d(8, 16, 1), bn(16), nn.ReLU())

        def forward(self, x):
            return self.pw(self.dw(self.stem(x)))

    class Relu6Block(nn.Module):
        # MobileNet-style: conv-BN-ReLU6, depthwise-BN-ReLU6, linear 1x1 projection
        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn(8), nn.ReLU6())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), bn(8), nn.ReLU6())
            self.pw = nn.Sequential(nn.Conv2d(8, 8, 1), bn(8))

        def forward(self, x):
            return self.pw(self.dw(self.c1(x)))

    class Residual(nn.Module):
        # a ResNet-8-like block: stride-2 main path with BN, 1x1 stride-2 projection shortcut
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn(8), nn.ReLU())
            self.a = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), bn(16), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), bn(16))
            self.short = nn.Conv2d(8, 16, 1, stride=2)
            self.identity = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), bn(16))

        def forward(self, x):
            s = self.stem(x)
            y = F.relu(self.b(self.a(s)) + self.short(s))
            return F.relu(y + self.identity(y))

    class GapLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn(8), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            return torch.softmax(self.fc(torch.flatten(self.pool(self.c1(x)), 1)), dim=1)

    class FlattenNonSquare(nn.Module):
        # 12x8 input -> MaxPool(2) -> a 6x4 map with 4 channels -> flatten (C,H,W order) -> Linear
        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 6 * 4, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.c1(x)), 1))

    class MaxPoolStem(nn.Module):
        # ResNet's stem pool: 3x3, stride 2, padding 1 (padding counts as -inf)
        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn(8), nn.ReLU())
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)

        def forward(self, x):
            return self.pool(self.c1(x))

    class AvgPoolWindows(nn.Module):
        # average pools with windows smaller than the input (no padding)
        def __init__(self):
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.p1 = nn.AvgPool2d(2)
            self.c2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.p2 = nn.AvgPool2d(3, stride=1)

        def forward(self, x):
            return self.p2(self.c2(self.p1(self.c1(x))))

    class PadConcat(nn.Module):
        # explicit asymmetric zero Pad before a valid conv; two branches joined on channels
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU())
            self.c = nn.Conv2d(10, 8, 3, padding=1)

        def forward(self, x):
            a = self.a(F.pad(x, (1, 1, 1, 1)))  # (left, right, top, bottom)
            b = self.b(x)
            y = torch.cat([a, b], dim=1)
            return self.c(F.pad(y, (0, 1, 1, 0)))

    class Mlp(nn.Module):
        # a vector-input autoencoder like MLPerf Tiny's anomaly-detection model, no softmax
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(64, 32),
                nn.ReLU(),
                nn.Linear(32, 8),
                nn.ReLU(),
                nn.Linear(8, 32),
                nn.ReLU(),
                nn.Linear(32, 64),
            )

        def forward(self, x):
            return self.net(x)

    return [
        (
            "conv_bn_relu",
            ConvBnRelu,
            (1, 3, 10, 8),
            "dynamo-external",
            "conv-BN-ReLU, default exporter with its .onnx.data side file",
        ),
        ("conv_bn_relu_legacy", ConvBnRelu, (1, 3, 10, 8), "legacy", "conv-BN-ReLU, legacy dynamo=False exporter"),
        (
            "bn_unfolded",
            DepthwiseSeparable,
            (1, 3, 8, 8),
            "dynamo-unoptimized",
            "BatchNormalization nodes left in the file (optimize=False), opset 18",
        ),
        ("stride2_pad1", Stride2Pad1, (1, 3, 9, 8), "dynamo", "3x3 stride-2 padding=1 convs on odd and even sizes"),
        (
            "depthwise_separable",
            DepthwiseSeparable,
            (1, 3, 8, 8),
            "dynamo",
            "conv, depthwise 3x3 stride 2, pointwise 1x1, each with BN",
        ),
        ("relu6", Relu6Block, (1, 3, 8, 8), "dynamo", "conv-BN-ReLU6, depthwise-BN-ReLU6, linear 1x1 (Clip 0..6)"),
        ("residual", Residual, (1, 3, 8, 8), "dynamo", "ResNet-8-like block: projection shortcut add, identity add"),
        (
            "gap_linear",
            GapLinear,
            (1, 3, 8, 8),
            "dynamo",
            "AdaptiveAvgPool(1) + flatten + Linear + softmax (ReduceMean, Reshape, Gemm)",
        ),
        (
            "gap_linear_legacy",
            GapLinear,
            (1, 3, 8, 8),
            "legacy",
            "AdaptiveAvgPool(1) + Linear via legacy exporter (GlobalAveragePool, Flatten)",
        ),
        (
            "flatten_nonsquare",
            FlattenNonSquare,
            (1, 3, 12, 8),
            "dynamo",
            "MaxPool(2) to a 6x4 map, flatten (C,H,W) into Linear",
        ),
        ("flatten_nonsquare_legacy", FlattenNonSquare, (1, 3, 12, 8), "legacy", "the same net via the legacy exporter"),
        ("maxpool", MaxPoolStem, (1, 3, 9, 9), "dynamo", "MaxPool 3x3 stride 2 padding 1 (ResNet stem)"),
        ("avgpool", AvgPoolWindows, (1, 3, 8, 8), "dynamo", "AvgPool 2x2 and 3x3/1 windows smaller than the input"),
        (
            "pad_concat",
            PadConcat,
            (1, 3, 8, 8),
            "legacy",
            "explicit Pad (symmetric and asymmetric) and Concat on channels",
        ),
        ("mlp", Mlp, (1, 64), "dynamo", "vector-input MLP autoencoder [1,64] -> 64, no softmax head"),
    ]


def _seed_module(module, rng: np.random.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so BN folding really matters."""
    import torch

    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.BatchNorm2d):
                c = sub.num_features
                sub.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.3, c).astype(np.float32)))
                sub.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, c).astype(np.float32)))
                sub.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
                sub.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.2, c).astype(np.float32)))


def export_torch(name, cls, shape, exporter, out: Path, rng) -> tuple[np.ndarray, np.ndarray]:
    import torch

    torch.manual_seed(SEED)
    module = cls()
    _seed_module(module, rng)
    module.eval()
    inputs = rng.standard_normal((SAMPLES,) + shape[1:]).astype(np.float32)
    with torch.no_grad():
        outputs = np.concatenate([module(torch.from_numpy(inputs[i : i + 1])).numpy() for i in range(SAMPLES)])
    example = (torch.from_numpy(inputs[:1]),)
    path = out / f"{name}.onnx"
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    if exporter == "legacy":
        torch.onnx.export(
            module, example, str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=["y"]
        )
    elif exporter == "dynamo-external":
        torch.onnx.export(module, example, str(path), dynamo=True, verbose=False)
    elif exporter == "dynamo-unoptimized":
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=True,
            optimize=False,
            opset_version=18,
            external_data=False,
            verbose=False,
        )
    else:
        torch.onnx.export(module, example, str(path), dynamo=True, external_data=False, verbose=False)
    return inputs, outputs


# ---------------------------------------------------------------- Keras via tf2onnx


def export_keras(out: Path, rng) -> tuple[np.ndarray, np.ndarray] | str:
    """A Keras CNN through tf2onnx; returns the reason when TensorFlow or tf2onnx is missing."""
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as err:
        return f"tensorflow/tf2onnx not installed ({err})"
    keras = tf.keras
    keras.utils.set_random_seed(SEED)
    inp = keras.Input((12, 8, 3), name="x")  # H=12, W=8: non-square, so H/W mix-ups show
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(max_value=6.0)(x)
    x = keras.layers.Conv2D(8, 1, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)  # 3x2 map: Flatten runs H, W, C
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10)(x)
    y = keras.layers.Softmax()(x)
    model = keras.Model(inp, y)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c).astype(np.float32),
                    rng.normal(0.0, 0.2, c).astype(np.float32),
                    rng.normal(0.0, 0.3, c).astype(np.float32),
                    rng.uniform(0.5, 2.0, c).astype(np.float32),
                ]
            )
    inputs = rng.standard_normal((SAMPLES, 12, 8, 3)).astype(np.float32)
    outputs = np.concatenate([model(inputs[i : i + 1], training=False).numpy() for i in range(SAMPLES)])

    @tf.function(input_signature=[tf.TensorSpec((None, 12, 8, 3), tf.float32, name="x")])
    def forward(t):
        return model(t, training=False)

    path = out / "keras_tf2onnx.onnx"
    tf2onnx.convert.from_function(forward, input_signature=forward.input_signature, opset=17, output_path=str(path))
    return inputs, outputs


# ---------------------------------------------------------------- ORT quantize_static (QDQ)


def export_qdq(
    out: Path, source: Path, inputs: np.ndarray, rng, name: str = "qdq_residual"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ORT's quantize_static on a float fixture: QDQ, uint8 activations, int8 per-channel weights."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    calib = rng.standard_normal((16,) + inputs.shape[1:]).astype(np.float32)
    input_name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{input_name: calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    path = out / f"{name}.onnx"
    quantize_static(
        str(source),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    float_sess = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = np.concatenate([sess.run(None, {input_name: inputs[i : i + 1]})[0] for i in range(len(inputs))])
    float_outputs = np.concatenate(
        [float_sess.run(None, {input_name: inputs[i : i + 1]})[0] for i in range(len(inputs))]
    )
    return inputs, outputs, float_outputs


# ---------------------------------------------------------------- driver


def _ops(path: Path) -> list[str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return sorted({n.op_type for n in proto.graph.node})


def _check_ort(path: Path, inputs: np.ndarray, outputs: np.ndarray, tol: float) -> float:
    """ONNX Runtime on the file vs the source framework: the fixture must be faithful itself."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))])
    err = float(np.max(np.abs(got - outputs)) / max(float(np.max(np.abs(outputs))), 1e-30))
    if err > tol:
        raise SystemExit(f"{path.name}: ONNX Runtime differs from the source framework by {err:.3g} relative")
    return err


def _save_npz(path: Path, **arrays) -> None:
    # np.savez writes zip entries with fixed timestamps, so the same arrays give the same bytes
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", help="comma-separated fixture names")
    args = parser.parse_args(argv)
    _quiet()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    manifest_path = out / "fixtures.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    import torch

    torch.set_num_threads(1)
    for index, (name, cls, shape, exporter, description) in enumerate(torch_models()):
        if only and name not in only:
            continue
        rng = np.random.default_rng(SEED + index)
        inputs, outputs = export_torch(name, cls, shape, exporter, out, rng)
        err = _check_ort(out / f"{name}.onnx", inputs, outputs, 1e-4)
        _save_npz(out / f"{name}.npz", inputs=inputs, outputs=outputs)
        files = [f"{name}.onnx"] + ([f"{name}.onnx.data"] if (out / f"{name}.onnx.data").exists() else [])
        manifest[name] = {
            "files": files,
            "source": f"torch {torch.__version__.split('+')[0]} {exporter}",
            "layout": "NCHW" if len(shape) == 4 else "vector",
            "ops": _ops(out / f"{name}.onnx"),
            "description": description,
        }
        print(f"{name:26s} {exporter:20s} ort vs torch {err:.2e}  {', '.join(manifest[name]['ops'])}")

    if not only or "keras_tf2onnx" in only:
        result = export_keras(out, np.random.default_rng(SEED + 100))
        if isinstance(result, str):
            print(f"keras_tf2onnx: skipped, {result}", file=sys.stderr)
        else:
            import tensorflow as tf
            import tf2onnx

            inputs, outputs = result
            err = _check_ort(out / "keras_tf2onnx.onnx", inputs, outputs, 1e-4)
            _save_npz(out / "keras_tf2onnx.npz", inputs=inputs, outputs=outputs)
            manifest["keras_tf2onnx"] = {
                "files": ["keras_tf2onnx.onnx"],
                "source": f"tensorflow {tf.__version__} keras + tf2onnx {tf2onnx.__version__}",
                "layout": "NHWC",
                "ops": _ops(out / "keras_tf2onnx.onnx"),
                "description": "Keras CNN (BN, depthwise, ReLU6, MaxPool, Flatten of a 3x2 map, Dense, softmax), dynamic batch",
            }
            print(f"{'keras_tf2onnx':26s} {'tf2onnx':20s} ort vs keras {err:.2e}")

    # ORT quantize_static of float fixtures: convs + adds; Gemm, float ReduceMean and a 1/255
    # QLinearSoftmax; Gemm after a C,H,W flatten with MaxPool; a vector-input MLP
    qdq_sources = {
        "qdq_residual": "residual",
        "qdq_gap_linear": "gap_linear",
        "qdq_flatten": "flatten_nonsquare",
        "qdq_mlp": "mlp",
    }
    for k, (qname, float_name) in enumerate(qdq_sources.items()):
        if only and qname not in only:
            continue
        import onnxruntime

        source = out / f"{float_name}.onnx"
        with np.load(out / f"{float_name}.npz") as data:
            inputs = data["inputs"]
        inputs, outputs, float_outputs = export_qdq(out, source, inputs, np.random.default_rng(SEED + 200 + k), qname)
        _save_npz(out / f"{qname}.npz", inputs=inputs, outputs=outputs, float_outputs=float_outputs)
        manifest[qname] = {
            "files": [f"{qname}.onnx"],
            "source": f"onnxruntime {onnxruntime.__version__} quantize_static of {float_name}.onnx",
            "layout": manifest[float_name]["layout"],
            "ops": _ops(out / f"{qname}.onnx"),
            "description": "QDQ, uint8 activations, int8 per-channel weights, MinMax on 16 seeded samples",
        }
        print(f"{qname:26s} {'quantize_static':20s} {', '.join(manifest[qname]['ops'])}")

    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    for path in sorted(out.iterdir()):
        if path.stat().st_size > 200_000:
            raise SystemExit(f"{path.name}: {path.stat().st_size} bytes, over the 200 KB fixture limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
