"""edgeconv: plan small conv nets for embedded targets, export them, and prove parity.

Importing edgeconv imports no runtime (onnxruntime, LiteRT, TFLM) and no CLI library.
"""
__version__ = "0.1.0"
