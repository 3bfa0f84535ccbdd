"""Predicted memory: peak activation RAM (tensor liveness) and int8 model file bytes.

Both are predictions used by the planner before anything is exported. The constants of the
file-size model describe the int8 TFLite flatbuffer layout (one tensor record per activation,
weight and bias; per-channel scales and zero points; one operator record per op) and are
checked against real exported files by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeconv.core.graph import Analysis, LayerInfo
from edgeconv.core.ir import (
    INPUT,
    Add,
    AvgPool,
    Concat,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    MaxPool,
    Pad,
    Softmax,
)
from edgeconv.core.optable import OpTable

# Flatbuffer bookkeeping, in bytes, fitted by least squares to the int8 .tflite files that
# export/tflite.py writes (recipes and planner outputs, 6 KB to 1 MB; residuals within ±32 B)
# and raised by a margin so that the prediction is never below the real file.
FILE_BASE_BYTES = 600  # model header, subgraph, operator codes, input tensor, margin
PER_CHANNEL_QUANT_BYTES = 12  # float32 scale + int64 zero point per output channel (weight and bias)
OPERATOR_BYTES = 138  # operator record with its options + its output tensor record
# weight and bias tensor records and their buffer entries; +16 over the first fit: buffers are
# 16-byte aligned, and deep planner outputs (20-40 weighted layers) showed the padding
WEIGHTED_OPERATOR_BYTES = 238
# ADD and pooling ops carry longer records than the conv-like average above (two inputs,
# Pool2DOptions): measured +24..+30 B each on residual / pooled planner outputs, raised
JOIN_POOL_EXTRA_BYTES = 40
RESHAPE_BYTES = 209  # RESHAPE op + shape tensor before a dense layer on a spatial map


@dataclass(frozen=True)
class MemoryEstimate:
    weight_bytes: int  # int8 weights
    bias_bytes: int  # int32 biases
    model_bytes: int  # predicted int8 .tflite size
    peak_ram_bytes: int  # largest set of int8 activations alive at once
    peak_ram_layer: str  # the layer during which that peak happens


@dataclass(frozen=True)
class FileRecords:
    """What one IR layer adds to the int8 .tflite beyond its weights: operator records, weight
    and bias tensor records, per-channel quantization records, a RESHAPE before a dense layer."""

    operators: int = 1
    weighted: int = 0
    bias_channels: int = 0
    reshapes: int = 0
    joins_pools: int = 0  # ADD / MAX_POOL / AVERAGE_POOL ops


FILE_RECORDS: OpTable = OpTable("model file bytes")


@FILE_RECORDS.register(Conv2d, DepthwiseConv2d)
def _conv_records(info: LayerInfo) -> FileRecords:
    return FileRecords(weighted=1, bias_channels=info.out_shape[2])


@FILE_RECORDS.register(Dense)
def _dense_records(info: LayerInfo) -> FileRecords:
    # the TFLite export flattens a spatial input with a RESHAPE first
    return FileRecords(weighted=1, bias_channels=info.out_shape[2], reshapes=int(info.in_shape[:2] != (1, 1)))


@FILE_RECORDS.register(GlobalAvgPool, Softmax, Concat, Pad)
def _plain_records(info: LayerInfo) -> FileRecords:
    return FileRecords()


@FILE_RECORDS.register(MaxPool, AvgPool, Add)
def _join_pool_records(info: LayerInfo) -> FileRecords:
    return FileRecords(joins_pools=1)


def _records(analysis: Analysis) -> list[FileRecords]:
    return [FILE_RECORDS.handler(layer)(info) for layer, info in zip(analysis.model.layers, analysis.layers)]


def _bias_count(analysis: Analysis) -> int:
    return sum(r.bias_channels for r in _records(analysis))


def model_bytes_formula(
    weights: int, channels: int, n_ops: int, n_weighted: int, n_reshapes: int = 0, n_joins_pools: int = 0
) -> int:
    """Predicted int8 .tflite bytes from counts: int8 weights, int32 biases (one per output
    channel), per-channel quantization records and the flatbuffer bookkeeping."""
    return (
        FILE_BASE_BYTES
        + weights
        + 4 * channels
        + 2 * PER_CHANNEL_QUANT_BYTES * channels
        + OPERATOR_BYTES * n_ops
        + WEIGHTED_OPERATOR_BYTES * n_weighted
        + RESHAPE_BYTES * n_reshapes
        + JOIN_POOL_EXTRA_BYTES * n_joins_pools
    )


def predict_model_bytes(analysis: Analysis) -> int:
    records = _records(analysis)
    channels = sum(r.bias_channels for r in records)
    return model_bytes_formula(
        analysis.params - channels,
        channels,
        sum(r.operators for r in records),
        sum(r.weighted for r in records),
        sum(r.reshapes for r in records),
        sum(r.joins_pools for r in records),
    )


def peak_activation_ram(analysis: Analysis, bytes_per_element: int = 1) -> tuple[int, str]:
    """Peak bytes of live activations over the layer order, and the layer where it happens.

    A tensor is alive from the layer that writes it to the last layer that reads it; the
    model input is alive until its last reader and the model output until the end.
    """
    model = analysis.model
    sizes = {INPUT: model.input.width * model.input.height * model.input.channels}
    sizes.update({info.name: info.out_elements for info in analysis.layers})
    order = {INPUT: -1, **{info.name: i for i, info in enumerate(analysis.layers)}}
    last_use = {name: order[name] for name in sizes}
    for i, info in enumerate(analysis.layers):
        for src in info.inputs:
            last_use[src] = max(last_use[src], i)
    last_use[analysis.layers[-1].name] = len(analysis.layers)
    peak, peak_layer = 0, analysis.layers[0].name
    for i, info in enumerate(analysis.layers):
        live = sum(size for name, size in sizes.items() if order[name] <= i <= last_use[name])
        if live > peak:
            peak, peak_layer = live, info.name
    return peak * bytes_per_element, peak_layer


def estimate(analysis: Analysis, ram_model=None) -> MemoryEstimate:
    """Predicted memory; `ram_model(analysis)` (e.g. the TFLM arena) replaces the liveness peak."""
    channels = _bias_count(analysis)
    peak, layer = peak_activation_ram(analysis)
    if ram_model is not None:
        peak = ram_model(analysis)
    return MemoryEstimate(
        weight_bytes=analysis.params - channels,
        bias_bytes=4 * channels,
        model_bytes=predict_model_bytes(analysis),
        peak_ram_bytes=peak,
        peak_ram_layer=layer,
    )
