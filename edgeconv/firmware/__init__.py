"""Firmware for Cortex-M: the model as a C array, a TFLite Micro application project, the cached
TFLM library it links against (library.py), and runs on an emulated core (see device/cortex_m.py)."""
