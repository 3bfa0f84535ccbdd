"""edgeconv: plan small conv nets for embedded targets, export them, and prove parity.

The package folders follow the data, in this order:

  core/       the IR (ops, shapes, graph analysis), the numpy float reference, errors, sizes
  plan/       planner, recipes, target profiles, memory and arena models   -> an IR model
  frontends/  importers for users' ONNX / TFLite files                     -> an IR model
  train/      PyTorch training of an IR model (optional extra)             -> weights
  quant/      calibration, one QuantParams, the bit-exact int8 goldens     -> scales
  export/     float ONNX, QDQ ONNX, TFLite from the IR + QuantParams       -> artifacts
  artifacts/  writes and loads a build folder (plan, weights, quant, artifacts, report)
  firmware/   C arrays and a TFLite Micro firmware project for a Cortex-M
  backends/   one file per target runtime (cpu, arm, npu, mcu, reference)
  bench/      latency per target
  parity/     every target against the references: metrics, policy, verdicts
  device/     validation bundles and the devices that run them
  report/     tables and pages people read
  cli/        the command line, one module per command group

Importing edgeconv imports no runtime (onnxruntime, LiteRT, TFLM) and no CLI library.
"""

__version__ = "0.1.0"
