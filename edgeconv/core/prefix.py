"""Prefix models: the part of a model that computes one layer, as a model of its own.

A runtime whose intermediate tensors cannot be read back (LiteRT with XNNPACK reuses the
delegate's memory; a microcontroller interpreter keeps only its outputs) can still report a
layer's output: export the prefix that ends at that layer with the same QuantParams and run
it with the same kernels. The prefix keeps the model input and only the layers the named layer
depends on, in the original order, so the named layer is its last layer (its output) and every
kept layer computes exactly what it computes in the whole model.

Pure: no runtime and no exporter is imported.
"""

from __future__ import annotations

from dataclasses import replace

from edgeconv.core.errors import UsageError
from edgeconv.core.ir import INPUT, Model


def needed_layers(model: Model, layer_name: str) -> list[str]:
    """Names of the layers `layer_name` depends on, itself included, in model order."""
    by_name = {layer.name: layer for layer in model.layers}
    if layer_name not in by_name:
        raise UsageError(f"layer {layer_name!r}: not a layer of {model.name} (layers: {', '.join(by_name)})")
    needed: set[str] = set()
    stack = [layer_name]
    while stack:
        name = stack.pop()
        if name == INPUT or name in needed:
            continue
        needed.add(name)
        stack.extend(by_name[name].inputs)
    return [layer.name for layer in model.layers if layer.name in needed]


def prefix_model(model: Model, layer_name: str) -> Model:
    """The model that ends at `layer_name`: the input plus the layers that layer needs.

    The layers are the original (frozen) layer objects, so names, inputs and attributes are
    unchanged and the QuantParams and weights of the whole model apply to the prefix as they
    are. Asking for the last layer of a chain gives a model equal to the original apart from
    its name.
    """
    keep = set(needed_layers(model, layer_name))
    layers = tuple(layer for layer in model.layers if layer.name in keep)
    return replace(
        model,
        name=f"{model.name}.upto.{layer_name}",
        layers=layers,
        description=f"{model.name} up to and including layer {layer_name}",
    )
