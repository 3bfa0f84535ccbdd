"""Model Explorer overlays: a parity run's per-layer figures painted onto the int8 .tflite graph.

`edgeconv parity DIR --model-explorer OUT` writes, per target, node-data files of Google's
ai-edge-model-explorer (built with its own `node_data_builder` classes, so the format is the
package's, not a copy of it):

  OUT/<target>.lsb.json    max LSB of each layer against the target's golden, on the layer's
                           own inputs (the deployment figure, parity JSON per_layer max_lsb)
  OUT/<target>.sqnr.json   SQNR in dB of each layer against the float reference (the quality
                           figure, per_layer sqnr_db)

A node-data file holds one value per node, so each figure has its own file. The file is
ModelNodeData → graphsData → {graph id: GraphNodeData(results, thresholds)}; the results are
keyed by the output tensor names of DIR/model.int8.tflite as read from that file (Model Explorer
matches a key against each node's output `tensor_name`), so

  model-explorer DIR/model.int8.tflite --node_data_paths=OUT/cpu.lsb.json,OUT/cpu.sqnr.json

colours the graph. The package (the `explorer` extra) is imported only here, and only when
the option is given: it pulls in a web server and takes ~1.5 s to import.
"""

from __future__ import annotations

import math
from typing import Any

from edgeconv.core.errors import MissingRuntime

# LSB: 0 green (bit-exact), 1 yellow (a rounding step), up to 3 orange, more red; a layer over
# its allowance gets its own dark-red fill whatever its value (the gate is per layer)
LSB_THRESHOLDS = ((0, "#9ae6b4"), (1, "#faf089"), (3, "#f6ad55"), (10**9, "#fc8181"))
OVER_ALLOWANCE = ("#a4161a", "#ffffff")
# SQNR against float: <= 10 dB red, <= 20 orange, <= 30 yellow, better green
SQNR_THRESHOLDS = ((10, "#fc8181"), (20, "#f6ad55"), (30, "#faf089"), (10**9, "#9ae6b4"))


def node_data_builder():
    """The package's node_data_builder module, or MissingRuntime naming the extra."""
    try:
        from model_explorer import node_data_builder as ndb
    except ImportError:
        raise MissingRuntime(
            "--model-explorer: ai-edge-model-explorer is not installed; install it with: "
            "pip install 'edgeconv[explorer]'"
        ) from None
    return ndb


def tflite_keys(data: bytes) -> tuple[str, list[str]]:
    """The graph id and the node keys (operator output tensor names) of an int8 .tflite."""
    from edgeconv.frontends.tflite import operator_output_names

    return operator_output_names(data, "model.int8.tflite")


def _value(v: Any) -> float | str:
    # the parity JSON writes an exact layer's SQNR as "inf" (JSON has no infinity); the same
    # string here is shown as a label, uncoloured
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _rows(target: dict) -> list[dict]:
    return (target.get("deployment") or {}).get("per_layer") or target.get("per_layer") or []


def overlays(parity: dict, tensor_names: dict[str, str], graph_id: str, keys: list[str]) -> dict[str, Any]:
    """{file name: ModelNodeData} for a parity JSON document. `tensor_names` maps a layer to its
    tensor in the .tflite; layers whose tensor is not one of `keys` are left out."""
    ndb = node_data_builder()
    known = set(keys)
    files: dict[str, Any] = {}
    for t in parity["targets"]:
        lsb, sqnr = {}, {}
        for row in _rows(t):
            key = tensor_names.get(row["layer"], row["layer"])
            if key not in known:
                continue
            over = row["max_lsb"] > row["allowed"]
            bg, fg = OVER_ALLOWANCE if over else (None, None)
            lsb[key] = ndb.NodeDataResult(value=row["max_lsb"], bgColor=bg, textColor=fg)
            if "sqnr_db" in row:
                sqnr[key] = ndb.NodeDataResult(value=_value(row["sqnr_db"]))
        name = t["target"]
        for figure, results, thresholds, title in (
            ("lsb", lsb, LSB_THRESHOLDS, f"{name}: max LSB vs the {t['golden']} golden"),
            ("sqnr", sqnr, SQNR_THRESHOLDS, f"{name}: SQNR dB vs float"),
        ):
            if not results:
                continue
            graph = ndb.GraphNodeData(
                results=results,
                name=title,
                thresholds=[ndb.ThresholdItem(value=v, bgColor=c) for v, c in thresholds],
            )
            files[f"{name}.{figure}.json"] = ndb.ModelNodeData(graphsData={graph_id: graph})
    return files


def overlay_files(build, parity: dict) -> tuple[dict[str, bytes], list[str]]:
    """The node-data files of a parity run on `build` (file name -> bytes to write), keyed by
    the tensor names of the build's model.int8.tflite, and the compared layers that have no
    operator output tensor in that file (left out)."""
    data = build.artifact("int8_tflite").read_bytes()
    graph_id, keys = tflite_keys(data)
    layers = list(dict.fromkeys(row["layer"] for t in parity["targets"] for row in _rows(t)))
    names = {layer: build.tensor_name("int8_tflite", layer) for layer in layers}
    files = {
        name: (doc.to_json_string(indent=2) + "\n").encode("utf-8")
        for name, doc in overlays(parity, names, graph_id, keys).items()
    }
    known = set(keys)
    return files, [layer for layer in layers if names[layer] not in known]
