"""ONNX Runtime helpers for measurements (not a backend): one-thread sessions with a pinned
quantization precision, the op counts of the graph ORT actually runs, a tensor tapped as a graph
output, and ORT's own quantizer (`quantize_static`) as the baseline edgeconv is compared with."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from edgeconv.core.ir import INPUT


def session(model: bytes | str, precise: bool = True) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.x64quantprecision", "1" if precise else "0")
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def optimized_ops(model: bytes, precise: bool, path: Path) -> Counter:
    """Operator counts of the graph ORT actually runs (ORT_ENABLE_ALL, saved to `path`)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.x64quantprecision", "1" if precise else "0")
    so.optimized_model_filepath = str(path)
    ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


_ELEM_TYPES = {"float32": onnx.TensorProto.FLOAT, "uint8": onnx.TensorProto.UINT8, "int8": onnx.TensorProto.INT8}


def with_output(proto_bytes: bytes, name: str, dtype: str, shape: list[int]) -> bytes:
    """The ONNX model with tensor `name` (of numpy dtype name `dtype`) added as a graph output."""
    proto = onnx.load_from_string(proto_bytes)
    proto.graph.output.append(helper.make_tensor_value_info(name, _ELEM_TYPES[dtype], shape))
    return proto.SerializeToString()


class _Reader(CalibrationDataReader):
    """Feeds NHWC samples to ORT's calibrator one by one, as NCHW [1, C, H, W] float32."""

    def __init__(self, x_nhwc: np.ndarray):
        self.x = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
        self.i = 0

    def get_next(self):
        if self.i >= self.x.shape[0]:
            return None
        self.i += 1
        return {INPUT: self.x[self.i - 1 : self.i]}

    def rewind(self):
        self.i = 0


def ort_quantize(float_model: bytes, calib: np.ndarray, tmp: Path, tag: str) -> bytes:
    src, dst = tmp / f"{tag}.float.onnx", tmp / f"{tag}.ortq.onnx"
    src.write_bytes(float_model)
    quantize_static(
        str(src),
        str(dst),
        _Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return dst.read_bytes()


def compare_params(ec_qdq: bytes, ortq: bytes) -> list[str]:
    """Where edgeconv's QDQ model and ORT's quantize_static output quantize differently.

    Activations: the scale / zero point of each QuantizeLinear, keyed by the float tensor it
    quantizes (ORT names a graph output's tensor "<name>_QuantizeLinear_Input"); scales within
    1e-4 relative count as equal (ORT calibrates on its float32 run, edgeconv on the float64
    reference, so the ranges differ in the last bits). Weights and
    biases: the integer arrays (ORT: "<name>_quantized"). Returns one line per difference.
    """

    def inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
        return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}

    ec, oq = onnx.load_from_string(ec_qdq), onnx.load_from_string(ortq)
    ec_i, oq_i = inits(ec), inits(oq)
    ec_act = {}
    for node in ec.graph.node:
        if node.op_type == "QuantizeLinear":
            # edgeconv quantizes "<L>.float" into "<L>"; key by the layer name
            ec_act[node.output[0]] = (float(ec_i[node.input[1]]), int(ec_i[node.input[2]]))
    lines, same, close = [], 0, 0
    for node in oq.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        tensor = node.input[0].removesuffix("_QuantizeLinear_Input")
        theirs = (float(oq_i[node.input[1]]), int(oq_i[node.input[2]]))
        if tensor == INPUT:
            ours = (float(ec_i[f"{INPUT}.scale"]), int(ec_i[f"{INPUT}.zero_point"]))
        elif tensor in ec_act:
            ours = ec_act[tensor]
        else:
            continue  # e.g. ORT's re-quantization after Flatten / Transpose (same parameters as the input)
        if ours == theirs:
            same += 1
        elif ours[1] == theirs[1] and abs(theirs[0] / ours[0] - 1.0) < 1e-4:
            close += 1  # ranges from ORT's float32 run vs edgeconv's float64 reference: last-bit differences
        else:
            lines.append(
                f"activation {tensor}: edgeconv scale {ours[0]:.6g} zp {ours[1]}, "
                f"ORT scale {theirs[0]:.6g} zp {theirs[1]} (ORT/edgeconv scale {theirs[0] / ours[0]:.3f})"
            )
    for name, ours_q in ec_i.items():
        if not (name.endswith(".weight") or name.endswith(".bias")):
            continue
        theirs_q = oq_i.get(f"{name}_quantized")
        if theirs_q is None:
            lines.append(f"{name}: not found in ORT's model")
            continue
        diff = np.abs(theirs_q.reshape(ours_q.shape).astype(np.int64) - ours_q.astype(np.int64))
        if diff.any():
            lines.append(f"{name}: {int((diff > 0).sum())} of {diff.size} integers differ, by up to {int(diff.max())}")
    return [
        f"{same} activation tensors with identical scale and zero point, {close} equal but for float32 "
        f"rounding of the scale (< 1e-4 relative)"
    ] + lines
