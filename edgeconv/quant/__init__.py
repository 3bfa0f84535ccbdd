"""Int8 quantization: calibration, one set of quantization parameters, golden int8 reference.

Pure numpy; no runtime imports.
"""
