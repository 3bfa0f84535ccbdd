"""Map the trained MLPerf Tiny ResNet-8 (float32 .tflite) onto models/resnet8.toml as a --weights .npz.

Stop-gap until `edgeconv import` reads .tflite files (issue 9). The TFLite file is read with the
flatbuffer schema module LiteRT ships (no runtime is run). Its CONV_2D / FULLY_CONNECTED ops come
in the recipe's layer order (conv1, s1_conv1, s1_conv2, s2_conv1, s2_conv2, s2_proj, s3_conv1,
s3_conv2, s3_proj, fc) with SAME padding and the recipe's strides; each is checked (shape, stride,
padding, fused activation) before its weights are written in edgeconv's layout, which is
TFLite's (K, Fh, Fw, D) for convs and (units, n_in) for the FC.

    python scripts/resnet8_weights.py [--model ic_resnet8_float32.tflite] [--out resnet8_mlperf.npz]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT.parent / "shared" / "models" / "mlperf_tiny" / "ic_resnet8_float32.tflite"
# recipe layer, stride, fused ReLU
LAYERS = [
    ("conv1", 1, True),
    ("s1_conv1", 1, True),
    ("s1_conv2", 1, False),
    ("s2_conv1", 2, True),
    ("s2_conv2", 1, False),
    ("s2_proj", 2, False),
    ("s3_conv1", 2, True),
    ("s3_conv2", 1, False),
    ("s3_proj", 2, False),
    ("fc", None, False),
]


def tflite_weights(model_path: Path) -> dict[str, np.ndarray]:
    from ai_edge_litert import schema_py_generated as schema

    buf = model_path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    graph = model.subgraphs[0]
    opnames = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def const(index: int) -> np.ndarray:
        tensor = graph.tensors[index]
        data = model.buffers[tensor.buffer].data
        if tensor.type != schema.TensorType.FLOAT32 or data is None:
            raise SystemExit(f"{model_path.name}: tensor {tensor.name!r}: expected constant float32 data")
        return np.frombuffer(bytes(bytearray(data)), np.float32).reshape(tuple(tensor.shape)).copy()

    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = opnames[max(code.builtinCode, code.deprecatedBuiltinCode)]
        if name in ("CONV_2D", "FULLY_CONNECTED"):
            ops.append((name, op))
    if len(ops) != len(LAYERS):
        raise SystemExit(f"{model_path.name}: expected {len(LAYERS)} CONV_2D/FULLY_CONNECTED ops, got {len(ops)}")
    weights = {}
    relu = schema.ActivationFunctionType.RELU
    for (layer, stride, fused_relu), (opname, op) in zip(LAYERS, ops):
        opts = op.builtinOptions
        if stride is not None:
            if opname != "CONV_2D" or opts.strideW != stride or opts.strideH != stride:
                raise SystemExit(f"{layer}: expected CONV_2D stride {stride}, got {opname}")
            if opts.padding != schema.Padding.SAME:
                raise SystemExit(f"{layer}: expected SAME padding")
        if (opts.fusedActivationFunction == relu) != fused_relu:
            raise SystemExit(f"{layer}: fused activation differs from the recipe")
        weights[f"{layer}.weight"] = const(op.inputs[1])
        weights[f"{layer}.bias"] = const(op.inputs[2])
    return weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=Path("resnet8_mlperf.npz"))
    args = parser.parse_args(argv)
    weights = tflite_weights(args.model)
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    args.out.write_bytes(buffer.getvalue())
    n = sum(v.size for v in weights.values())
    print(f"wrote {args.out}: {len(weights)} arrays, {n:,} parameters", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
