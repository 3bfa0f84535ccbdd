"""How the QNN HTP emulator applies an int32 bias in FC (Gemm) and conv: the evidence behind
quant/htp.py's KNOWN_HTP_DEVIATIONS entries for dense and conv2d.

    python scripts/probe_htp_bias.py [--op gemm|conv|both]

Probe: one layer with two inputs (a, b) in 0..255 and weights (127, 1) per output channel, so
the bias-free accumulator 127a + b takes every value 0..32,640 (here a < 32: 0..4,190). Each
output channel gets its own bias; all channels share the scales (s_in 0.0820, s_w 0.0203,
s_out 0.0964, zero point 73: the trained ResNet-8's fc, shift k = 2). The output steps where
floor((acc + bias) / 2^k) steps, so comparing a channel's step positions with those of a
zero-bias channel gives the bias the HTP actually added (`effective`). Biases -100..100 are
probed next to one large bias L (the tensor's range), for several L.

Prints, per L, how many of the 200 non-zero small biases the HTP applies one step toward
zero, and the max LSB of the outputs against the htp golden (which adds the file's bias).
Needs onnxruntime-qnn (x86_64 HTP emulator).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgeconv.backends import get_backend
from edgeconv.plan.targets import load_target
from edgeconv.quant import htp

S_IN, S_W, S_OUT, ZP_OUT = 0.08201434463262558, 0.0203, 0.09636177867650986, 73
RANGES = (300, 1000, 3000, 30000, 3_000_000, 30_000_000)


def probe_model(op: str, bias: np.ndarray, n: int) -> bytes:
    """uint8 QDQ model: Gemm over [n, 2] or a 1x1 Conv over [1, 2, n, 1], weights (127, 1)."""
    cout = len(bias)
    w = np.tile(np.array([[127, 1]], np.int8), (cout, 1))
    s_b = (np.float32(S_IN) * np.full(cout, S_W, np.float32)).astype(np.float32)
    shape_x, shape_y = ([n, 2], [n, cout]) if op == "gemm" else ([1, 2, n, 1], [1, cout, n, 1])
    if op == "conv":
        w = w.reshape(cout, 2, 1, 1)
    inits = [
        numpy_helper.from_array(np.array(S_IN, np.float32), "s_in"),
        numpy_helper.from_array(np.array(0, np.uint8), "zp_in"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.full(cout, S_W, np.float32), "s_w"),
        numpy_helper.from_array(np.zeros(cout, np.int8), "zp_w"),
        numpy_helper.from_array(bias.astype(np.int32), "b"),
        numpy_helper.from_array(s_b, "s_b"),
        numpy_helper.from_array(np.zeros(cout, np.int32), "zp_b"),
        numpy_helper.from_array(np.array(S_OUT, np.float32), "s_out"),
        numpy_helper.from_array(np.array(ZP_OUT, np.uint8), "zp_out"),
    ]
    layer = (
        helper.make_node("Gemm", ["xf", "wf", "bf"], ["yf"], transB=1)
        if op == "gemm"
        else helper.make_node("Conv", ["xf", "wf", "bf"], ["yf"], kernel_shape=[1, 1])
    )
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s_in", "zp_in"], ["xf"]),
        helper.make_node("DequantizeLinear", ["w", "s_w", "zp_w"], ["wf"], axis=0),
        helper.make_node("DequantizeLinear", ["b", "s_b", "zp_b"], ["bf"], axis=0),
        layer,
        helper.make_node("QuantizeLinear", ["yf", "s_out", "zp_out"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape_x)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, shape_y)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model.SerializeToString()


def run_probe(backend, op: str, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accumulators without bias [n], HTP outputs [n, channels]) of one probe."""
    a, b = np.meshgrid(np.arange(32), np.arange(256), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], 1).astype(np.uint8)
    sess = backend._session(probe_model(op, bias, len(x)), f"{op} probe")
    feed = x if op == "gemm" else x.T.reshape(1, 2, -1, 1)
    y = sess.run(None, {"x": feed})[0]
    y = y.reshape(len(x), -1) if op == "gemm" else y.reshape(len(bias), -1).T
    return x.astype(np.int64) @ np.array([127, 1]), y.astype(np.int64)


def effective_biases(acc0: np.ndarray, y: np.ndarray) -> list[int | None]:
    """Per channel, the integer e with y_c(acc) = y_0(acc + e) at every step (channel 0: bias 0)."""
    order = np.argsort(acc0, kind="stable")
    acc, ys = acc0[order], y[order]

    def steps(c: int) -> dict[int, int]:
        up = np.diff(ys[:, c]) > 0
        return dict(zip(ys[1:, c][up].tolist(), acc[1:][up].tolist(), strict=True))

    ref, out = steps(0), []
    for c in range(y.shape[1]):
        shifts_seen = {ref[v] - s for v, s in steps(c).items() if v in ref}
        out.append(shifts_seen.pop() if len(shifts_seen) == 1 else None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", choices=("gemm", "conv", "both"), default="both")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    backend = get_backend(load_target("npu"))
    reason = backend.unavailable()
    if reason:
        print(f"skipped: {reason}")
        return 2
    start = time.perf_counter()
    m = np.float64(np.float32(S_IN)) * np.float64(np.float32(S_W)) / np.float64(np.float32(S_OUT))
    print(f"m = {m:.6f}, k = {int(htp.shifts(m))}; biases -100..100 next to one bias L (the tensor's range)")
    print()
    print("| op | L | small biases applied off by one (toward zero) | other deltas | max LSB vs htp golden |")
    print("|---|---:|---:|---|---:|")
    for op in ("gemm", "conv") if args.op == "both" else (args.op,):
        for big in RANGES:
            small = np.array([b for b in range(-100, 101) if b != 0])
            bias = np.concatenate([[0], small, [big]])
            acc0, y = run_probe(backend, op, bias)
            eff = effective_biases(acc0, y)
            delta = [None if e is None else e - int(b) for e, b in zip(eff[1:-1], small, strict=True)]
            toward_zero = sum(d == -int(np.sign(b)) for d, b in zip(delta, small, strict=True))
            other = sorted({d for d in delta if d not in (0, -1, 1)}, key=str)
            want = np.clip(
                htp.requantize_htp(acc0[:, None] + bias, S_IN, np.full(len(bias), S_W), S_OUT) + ZP_OUT, 0, 255
            )
            lsb = int(np.abs(y - want).max())
            print(f"| {op} | {big:,} | {toward_zero} of {len(small)} | {other or '-'} | {lsb} |")
    print()
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
