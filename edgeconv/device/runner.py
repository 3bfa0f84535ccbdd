"""The on-device runner of an edgeconv bundle (copied into every bundle as runner.py).

    python3 runner.py BUNDLE_DIR [--kernels auto|xnnpack|builtin|reference] [--out DIR]

Needs only the standard library, numpy and the target's runtime (ai_edge_litert, onnxruntime
[+ onnxruntime_qnn], or tflite_micro); it never imports edgeconv, so a device needs no
edgeconv install. It

1. verifies the SHA-256 of every file listed in manifest.json (a missing or modified file:
   exit 3, one line on stderr);
2. loads the artifact with the runtime the manifest names, feeds each quantized input of
   inputs.npy (batch 1 per invoke, NHWC as the bundle stores it);
3. writes DIR/outputs.npy (the raw quantized outputs, NHWC, in the runtime's dtype) and
   DIR/result.json (runtime and version, kernels used, numpy and Python versions,
   platform.machine(), timings, the hash of outputs.npy). DIR defaults to BUNDLE_DIR/result.

Exit codes: 0 ran, 2 bad usage / runtime missing / runtime failed, 3 bundle failed the hash
check. Comparing the outputs with the expected ones is done by `edgeconv validate`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time

FORMAT = 1
KERNELS = ("auto", "xnnpack", "builtin", "reference")
LITERT_RESOLVERS = {"xnnpack": "AUTO", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "reference": "BUILTIN_REF"}
ORT_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}
EXIT_USAGE, EXIT_TAMPERED = 2, 3


class RunnerError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:400]


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(folder: str) -> dict:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise RunnerError(
            f"bundle {folder}: manifest.json not found (not an edgeconv bundle?)", EXIT_TAMPERED
        ) from None
    except (OSError, ValueError) as err:
        raise RunnerError(f"bundle {folder}: manifest.json unreadable ({one_line(err)})", EXIT_TAMPERED) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise RunnerError(f"bundle {folder}: manifest.json has no 'files' table of SHA-256 hashes", EXIT_TAMPERED)
    return manifest


def verify_hashes(folder: str, manifest: dict) -> None:
    """Every listed file must exist as a plain file inside the folder with the listed hash."""
    for name, want in sorted(manifest["files"].items()):
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise RunnerError(f"bundle: manifest.json lists an invalid file name {name!r}", EXIT_TAMPERED)
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path):
            raise RunnerError(
                f"bundle: {name} is listed in manifest.json but missing (or not a plain file)", EXIT_TAMPERED
            )
        got = sha256_file(path)
        if got != want:
            raise RunnerError(
                f"bundle: {name} failed the hash check (SHA-256 {got[:16]}..., manifest says "
                f"{str(want)[:16]}...): the bundle was modified or corrupted; rebuild it with "
                "'edgeconv bundle'",
                EXIT_TAMPERED,
            )


def package_version(*names: str) -> str | None:
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    for name in names:
        try:
            return metadata.version(name)
        except Exception:
            continue
    return None


# -- runtimes -------------------------------------------------------------------------------------


def _nhwc(np, y):
    return y.reshape(1, 1, 1, -1) if y.ndim == 2 else y


def run_litert(np, model_path: str, x, kernels: str, options: dict, n_outputs: int):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as err:
        raise RunnerError(
            f"runtime: ai_edge_litert does not import ({one_line(err)}); install it with: pip install ai-edge-litert"
        ) from None
    resolver = getattr(OpResolverType, LITERT_RESOLVERS[kernels])
    threads = int(options.get("num_threads", 1))
    start = time.perf_counter()
    it = Interpreter(model_path=model_path, num_threads=threads, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    load_s = time.perf_counter() - start
    inp, outs = it.get_input_details()[0], it.get_output_details()[:n_outputs]

    def invoke(sample):
        it.set_tensor(inp["index"], sample)
        it.invoke()
        return [_nhwc(np, np.array(it.get_tensor(out["index"]))) for out in outs]

    return (
        invoke,
        load_s,
        {
            "name": "ai-edge-litert",
            "module": "ai_edge_litert",
            "version": package_version("ai-edge-litert"),
            "resolver": LITERT_RESOLVERS[kernels],
            "num_threads": threads,
        },
    )


def _ort_session_options(ort, options: dict):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    level = str(options.get("graph_optimization_level", "all"))
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS.get(level, "ORT_ENABLE_ALL"))
    so.intra_op_num_threads = int(options.get("intra_op_num_threads", 1))
    if options.get("x64quantprecision") is not None:
        so.add_session_config_entry("session.x64quantprecision", str(int(options["x64quantprecision"])))
    return so


def run_onnxruntime(np, model_path: str, x, options: dict, qnn: bool, n_outputs: int):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise RunnerError(
            f"runtime: onnxruntime does not import ({one_line(err)}); install it with: pip install onnxruntime"
        ) from None
    info = {"name": "onnxruntime", "module": "onnxruntime", "version": getattr(ort, "__version__", None)}
    start = time.perf_counter()
    if qnn:
        try:
            import onnxruntime_qnn
        except ImportError as err:
            raise RunnerError(
                f"runtime: onnxruntime_qnn does not import ({one_line(err)}); "
                "install it with: pip install onnxruntime-qnn"
            ) from None
        ep = "QNNExecutionProvider"
        if not any(d.ep_name == ep for d in ort.get_ep_devices()):
            ort.register_execution_provider_library(ep, onnxruntime_qnn.get_library_path())
        devices = [d for d in ort.get_ep_devices() if d.ep_name == ep][:1]
        if not devices:
            raise RunnerError("runtime: the QNN execution provider offers no device here")
        so = ort.SessionOptions()
        so.log_severity_level = 4
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        provider = {k: str(v) for k, v in options.items() if k != "disable_cpu_ep_fallback"}
        provider.setdefault("backend_type", "htp")
        provider.setdefault("offload_graph_io_quantization", "0")
        provider.setdefault("htp_graph_finalization_optimization_mode", "0")
        so.add_provider_for_devices(devices, provider)
        sess = ort.InferenceSession(model_path, so)
        info.update(
            {
                "ep": ep,
                "provider_options": provider,
                "onnxruntime_qnn": package_version("onnxruntime-qnn", "onnxruntime_qnn"),
            }
        )
    else:
        sess = ort.InferenceSession(model_path, _ort_session_options(ort, options), providers=["CPUExecutionProvider"])
        info["ep"] = "CPUExecutionProvider"
    load_s = time.perf_counter() - start
    in_name, out_names = sess.get_inputs()[0].name, [o.name for o in sess.get_outputs()[:n_outputs]]

    def invoke(sample):
        ys = sess.run(out_names, {in_name: np.ascontiguousarray(sample.transpose(0, 3, 1, 2))})
        return [_nhwc(np, y.transpose(0, 2, 3, 1) if y.ndim == 4 else y) for y in ys]

    return invoke, load_s, info


def run_tflite_micro(np, model_path: str, x, options: dict, n_outputs: int):
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as err:
        raise RunnerError(
            f"runtime: tflite_micro does not import ({one_line(err)}); install it with: pip install tflite-micro"
        ) from None
    arena = int(options.get("arena_bytes") or 8 << 20)
    start = time.perf_counter()
    with open(model_path, "rb") as handle:
        it = runtime.Interpreter.from_bytes(handle.read(), arena_size=arena)
    load_s = time.perf_counter() - start

    def invoke(sample):
        it.set_input(sample, 0)
        it.invoke()
        return [_nhwc(np, np.array(it.get_output(k))) for k in range(n_outputs)]

    return (
        invoke,
        load_s,
        {
            "name": "tflite-micro",
            "module": "tflite_micro",
            "version": package_version("tflite-micro", "tflite_micro"),
            "arena_bytes": arena,
        },
    )


# -- main -----------------------------------------------------------------------------------------


def resolve_kernels(requested: str, manifest: dict) -> str:
    runtime = manifest.get("runtime", {}).get("kind")
    default = manifest.get("runtime", {}).get("kernels") or "auto"
    if runtime != "litert":
        if requested not in ("auto", default):
            raise RunnerError(
                f"--kernels: {requested!r} applies to LiteRT bundles only; this bundle runs "
                f"{runtime} (use --kernels auto)"
            )
        return default
    kernels = default if requested == "auto" else requested
    if kernels not in LITERT_RESOLVERS:
        raise RunnerError(f"bundle: kernels {kernels!r} unknown; expected one of {', '.join(LITERT_RESOLVERS)}")
    return kernels


def run(folder: str, requested: str, out_dir: str, options_override: dict | None = None) -> dict:
    manifest = load_manifest(folder)
    verify_hashes(folder, manifest)
    try:
        import numpy as np
    except ImportError as err:
        raise RunnerError(
            f"runtime: numpy does not import ({one_line(err)}); install it with: pip install numpy"
        ) from None
    runtime = manifest.get("runtime")
    artifact = manifest.get("artifact")
    if not isinstance(runtime, dict) or not isinstance(manifest.get("input"), dict):
        raise RunnerError("bundle: manifest.json has no 'runtime' or 'input' table", EXIT_TAMPERED)
    if not isinstance(artifact, str) or artifact not in manifest["files"]:
        raise RunnerError(f"bundle: manifest.json's artifact {artifact!r} is not one of its files", EXIT_TAMPERED)
    kernels = resolve_kernels(requested, manifest)
    # `edgeconv validate` passes the installed target profile's options (--options): runtime
    # options can name libraries to load (QNN's backend_path), so a bundle's own are used only
    # when the runner is run by hand
    options = dict(options_override if options_override is not None else (runtime.get("options") or {}))
    model_path = os.path.join(folder, artifact)
    x = np.load(os.path.join(folder, "inputs.npy"), allow_pickle=False)
    want = str(manifest["input"]["dtype"])
    if x.dtype != np.dtype(want) or x.ndim != 4:
        raise RunnerError(f"bundle: inputs.npy is {x.dtype} {x.shape}, expected {want} N x H x W x C", EXIT_TAMPERED)
    kind = runtime.get("kind")
    # the model output first, then extra tensors the bundle asks for (e.g. the logits)
    extra = list(manifest.get("extra_outputs") or [])
    for spec in extra:
        name = str(spec.get("file", ""))
        if os.path.basename(name) != name or not name.endswith(".npy") or name in ("outputs.npy", "inputs.npy"):
            raise RunnerError(f"bundle: extra output file {name!r} refused (expected a plain NAME.npy)", EXIT_TAMPERED)
    n_outputs = 1 + len(extra)
    try:
        if kind == "litert":
            invoke, load_s, info = run_litert(np, model_path, x, kernels, options, n_outputs)
        elif kind in ("onnxruntime", "onnxruntime_qnn"):
            invoke, load_s, info = run_onnxruntime(np, model_path, x, options, kind == "onnxruntime_qnn", n_outputs)
        elif kind == "tflite_micro":
            invoke, load_s, info = run_tflite_micro(np, model_path, x, options, n_outputs)
        else:
            raise RunnerError(f"bundle: runtime {kind!r} unknown to this runner")
        outputs: list[list] = [[] for _ in range(n_outputs)]
        times: list[float] = []
        for i in range(x.shape[0]):
            sample = np.ascontiguousarray(x[i : i + 1])
            start = time.perf_counter()
            ys = invoke(sample)
            times.append(time.perf_counter() - start)
            for slot, y in zip(outputs, ys):
                slot.append(y)
    except RunnerError:
        raise
    except Exception as err:
        raise RunnerError(f"runtime {kind} ({kernels} kernels) failed: {type(err).__name__}: {one_line(err)}") from None
    y = np.concatenate(outputs[0])
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, "outputs.npy")
    np.save(out_path, y, allow_pickle=False)
    extra_results = {}
    for spec, slot in zip(extra, outputs[1:]):
        path = os.path.join(out_dir, spec["file"])
        np.save(path, np.concatenate(slot), allow_pickle=False)
        extra_results[spec["name"]] = {"file": spec["file"], "sha256": sha256_file(path)}
    ordered = sorted(times)
    result = {
        "format": FORMAT,
        "model": manifest.get("model"),
        "target": manifest.get("target", {}).get("name"),
        "manifest_sha256": sha256_file(os.path.join(folder, "manifest.json")),
        "runtime": info,
        "kernels": kernels,
        "kernels_requested": requested,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": platform.system(),
        "samples": int(x.shape[0]),
        "timings": {
            "load_s": round(load_s, 6),
            "total_s": round(sum(times), 6),
            "first_ms": round(times[0] * 1e3, 4) if times else None,
            "median_ms": round(ordered[len(ordered) // 2] * 1e3, 4) if times else None,
            "min_ms": round(ordered[0] * 1e3, 4) if times else None,
            "max_ms": round(ordered[-1] * 1e3, 4) if times else None,
        },
        "outputs": {
            "file": "outputs.npy",
            "sha256": sha256_file(out_path),
            "dtype": str(y.dtype),
            "shape": list(y.shape),
        },
        "extra_outputs": extra_results,
    }
    tmp = os.path.join(out_dir, ".result.json.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, os.path.join(out_dir, "result.json"))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="runner.py", description="Run an edgeconv bundle on this device.")
    parser.add_argument("bundle", help="the extracted bundle folder")
    parser.add_argument(
        "--kernels", choices=KERNELS, default="auto", help="LiteRT kernels (auto: the target profile's choice)"
    )
    parser.add_argument("--out", help="folder for result.json and outputs.npy (default: BUNDLE/result)")
    parser.add_argument(
        "--options", help="runtime options as a JSON object, instead of the manifest's (edgeconv validate passes them)"
    )
    args = parser.parse_args(argv)
    try:
        options = None
        if args.options is not None:
            try:
                options = json.loads(args.options)
            except ValueError as err:
                raise RunnerError(f"--options: expected a JSON object ({one_line(err)})") from None
            if not isinstance(options, dict):
                raise RunnerError("--options: expected a JSON object")
        result = run(args.bundle, args.kernels, args.out or os.path.join(args.bundle, "result"), options)
    except RunnerError as err:
        print(f"runner: error: {err}", file=sys.stderr)
        return err.code
    print(
        f"runner: {result['samples']} samples on {result['runtime']['name']} {result['runtime']['version']} "
        f"({result['kernels']} kernels, {result['machine']}) in {result['timings']['total_s']:.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
