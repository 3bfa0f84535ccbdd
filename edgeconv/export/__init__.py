"""Serializers from the IR to runtime formats (ONNX, TFLite). Imported only when exporting."""
