"""The source model on its own runtime, for the source check (parity.source).

A .tflite runs on LiteRT (float32, reference-free default resolver), an .onnx on ONNX
Runtime's CPU EP with graph optimizations off (the reference wants the model as written).
Inputs are the float NHWC samples parity uses; an ONNX model whose input is N, C, H, W (every
PyTorch export) gets them transposed, and its 4-D outputs are read back as N, H, W, C. Outputs
come back as (N, -1) float32, flattened in the IR's order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeconv.core.errors import InputError, MissingRuntime


def _nchw(shape, hwc: tuple[int, int, int]) -> bool:
    h, w, c = hwc
    dims = [d if isinstance(d, int) else None for d in shape]
    return len(dims) == 4 and dims[1] == c and dims[2:] == [h, w] and not (dims[3] == c and dims[1:3] == [h, w])


def run_source(path: str | Path, x: np.ndarray) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--source {path}: file not found")
    x = np.asarray(x, np.float32)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise MissingRuntime(
                "source check: a .tflite source needs ai-edge-litert: pip install 'edgeconv[arm]'"
            ) from None
        try:
            interp = Interpreter(model_path=str(path), num_threads=1)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise InputError(f"--source {path}: LiteRT cannot load it ({str(err).splitlines()[0]})") from None
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        if inp["dtype"] != np.float32:
            raise InputError(f"--source {path}: expected a float32 model, its input is {np.dtype(inp['dtype']).name}")
        ys = []
        for sample in x:
            interp.set_tensor(inp["index"], sample[None].reshape(inp["shape"]))
            interp.invoke()
            ys.append(interp.get_tensor(out["index"]).reshape(-1).copy())
        return np.asarray(ys, np.float32)
    if suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingRuntime(
                "source check: an .onnx source needs onnxruntime: pip install 'edgeconv[cpu]'"
            ) from None
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own exception types
            raise InputError(f"--source {path}: ONNX Runtime cannot load it ({str(err).splitlines()[0]})") from None
        inp = sess.get_inputs()[0]
        nchw = _nchw(inp.shape, x.shape[1:])
        feed = x.transpose(0, 3, 1, 2) if nchw else x

        def nhwc(y: np.ndarray) -> np.ndarray:
            # an NCHW model's spatial output flattened in the IR's H, W, C order (a conv-only
            # model's output would otherwise be compared channel-major against H, W, C)
            return y.transpose(0, 2, 3, 1) if nchw and y.ndim == 4 else y

        ys = [
            nhwc(sess.run(None, {inp.name: np.ascontiguousarray(feed[i : i + 1])})[0]).reshape(-1)
            for i in range(len(x))
        ]
        return np.asarray(ys, np.float32)
    raise InputError(f"--source {path}: expected a .tflite or .onnx model, got {suffix or 'no extension'!r}")
