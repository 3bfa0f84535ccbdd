"""Recipes: fixed topologies described in TOML files under models/.

A recipe names its input (W, H, C) and lists its layers in execution order; a layer reads
the layer before it unless it names its `inputs`. Errors name the file, the layer and the field.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from edgeconv.core.errors import InputError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import LAYER_TYPES, Activation, InputSpec, Model, as_pair, chain
from edgeconv.core.tensors import check_analysis_memory

_COMMON = {"name", "op", "inputs"}
_FIELDS = {
    "conv2d": {"filters", "kernel", "stride", "padding", "activation"},
    "depthwise_conv2d": {"kernel", "stride", "padding", "activation"},
    "max_pool": {"pool", "stride", "padding"},
    "avg_pool": {"pool", "stride", "padding"},
    "global_avg_pool": set(),
    "dense": {"units", "activation"},
    "add": {"activation"},
    "softmax": set(),
    "concat": set(),  # on channels, inputs in order
    "pad": {"pads"},  # zero padding [top, left, bottom, right]
}
_REQUIRED = {
    "conv2d": {"filters", "kernel"},
    "depthwise_conv2d": {"kernel"},
    "max_pool": {"pool"},
    "avg_pool": {"pool"},
    "dense": {"units"},
    "pad": {"pads"},
}


def models_dir() -> Path:
    """The repository's models/ folder (edgeconv is installed editable from the repo)."""
    return Path(__file__).resolve().parents[2] / "models"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def resolve_recipe_path(spec: str) -> Path:
    """A recipe is a path to a .toml file or the name of one in models/."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise InputError(f"recipe {spec}: file not found (recipes in models/: {', '.join(recipe_names())})")
        return path
    candidate = models_dir() / f"{spec}.toml"
    if not candidate.is_file():
        raise InputError(f"recipe {spec!r}: expected a .toml path or one of {', '.join(recipe_names())}")
    return candidate


class _Fields:
    """Typed access to one layer's table with errors that say where."""

    def __init__(self, where: str, table: dict[str, Any]):
        self.where, self.table = where, table

    def fail(self, field: str, expected: str) -> InputError:
        return InputError(f"{self.where}, field '{field}': expected {expected}, got {self.table.get(field)!r}")

    def positive_int(self, field: str, default: Any = None) -> int:
        value = self.table.get(field, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(field, "an integer >= 1")
        return value

    def pair(self, field: str, default: Any = None) -> tuple[int, int]:
        value = self.table.get(field, default)
        ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        )
        if not ok:
            raise self.fail(field, "an integer >= 1 or a [W, H] pair of them")
        return as_pair(value)

    def padding(self, default: str) -> str | int | tuple[int, int, int, int]:
        value = self.table.get("padding", default)
        if value in ("same", "valid") or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        # per side (top, left, bottom, right): what an imported layer keeps (shapes.SIDE_PADS)
        if (
            isinstance(value, list)
            and len(value) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        ):
            return (value[0], value[1], value[2], value[3])
        raise self.fail("padding", "'same', 'valid', an integer P >= 0 or [top, left, bottom, right]")

    def activation(self) -> Activation:
        value = self.table.get("activation", "none")
        try:
            return Activation(value)
        except ValueError:
            raise self.fail("activation", "one of " + ", ".join(a.value for a in Activation)) from None

    def inputs(self) -> tuple[str, ...]:
        value = self.table.get("inputs", [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("inputs", "a layer name or a list of layer names")
        return tuple(value)


def _layer(where: str, table: dict[str, Any]):
    op = table.get("op")
    if op not in LAYER_TYPES:
        raise InputError(f"{where}, field 'op': expected one of {', '.join(LAYER_TYPES)}, got {op!r}")
    unknown = set(table) - _COMMON - _FIELDS[op]
    if unknown:
        raise InputError(
            f"{where}, field '{sorted(unknown)[0]}': not a field of {op} "
            f"(fields: {', '.join(sorted(_COMMON | _FIELDS[op]))})"
        )
    for field in sorted(_REQUIRED.get(op, set())):
        if field not in table:
            raise InputError(f"{where}, field '{field}': required for {op}, missing")
    f = _Fields(where, table)
    name, inputs = table["name"], f.inputs()
    if op == "conv2d":
        return LAYER_TYPES[op](
            name=name,
            filters=f.positive_int("filters"),
            kernel=f.pair("kernel"),
            stride=f.pair("stride", 1),
            padding=f.padding("same"),
            activation=f.activation(),
            inputs=inputs,
        )
    if op == "depthwise_conv2d":
        return LAYER_TYPES[op](
            name=name,
            kernel=f.pair("kernel"),
            stride=f.pair("stride", 1),
            padding=f.padding("same"),
            activation=f.activation(),
            inputs=inputs,
        )
    if op in ("max_pool", "avg_pool"):
        pool = f.pair("pool")
        return LAYER_TYPES[op](
            name=name, pool=pool, stride=f.pair("stride", list(pool)), padding=f.padding("valid"), inputs=inputs
        )
    if op == "dense":
        return LAYER_TYPES[op](name=name, units=f.positive_int("units"), activation=f.activation(), inputs=inputs)
    if op == "add":
        return LAYER_TYPES[op](name=name, activation=f.activation(), inputs=inputs)
    if op == "pad":
        value = table["pads"]
        if not (
            isinstance(value, list)
            and len(value) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        ):
            raise f.fail("pads", "[top, left, bottom, right], integers >= 0")
        return LAYER_TYPES[op](name=name, pads=(value[0], value[1], value[2], value[3]), inputs=inputs)
    return LAYER_TYPES[op](name=name, inputs=inputs)


# layer names become file names in bundles (expected_<golden>_<layer>.npy) and tensor names
# in every artifact: letters, digits, '_', '.', '-', at most 64
LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_MODEL_NAME = 128


def model_from_dict(data: dict[str, Any], source: str) -> Model:
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a table with name, input and layers, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_MODEL_NAME or not name.isprintable():
        raise InputError(
            f"{source}, field 'name': expected a model name of 1 to {MAX_MODEL_NAME} printable characters, got {name!r}"
        )
    shape = data.get("input")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
    ):
        raise InputError(f"{source}, field 'input': expected [W, H, C] with positive integers, got {shape!r}")
    tables = data.get("layers")
    if not isinstance(tables, list) or not tables:
        raise InputError(f"{source}, field 'layers': expected a non-empty [[layers]] list, got {tables!r}")
    layers = []
    for i, table in enumerate(tables):
        lname = table.get("name") if isinstance(table, dict) else None
        if not isinstance(lname, str) or not LAYER_NAME.match(lname) or lname == "input":
            raise InputError(
                f"{source}, layer #{i + 1}, field 'name': expected a layer name of letters, digits, '_', '.' "
                f"or '-' (at most 64, not 'input'), got {lname!r}"
            )
        layers.append(_layer(f"{source}, layer {lname!r}", table))
    model = chain(name, InputSpec(*shape), layers, description=str(data.get("description", "")))
    try:
        analysis = analyze(model)
    except InputError as err:
        raise InputError(f"{source}: {err}") from None
    check_analysis_memory(analysis, source)
    return model


def model_to_dict(model: Model) -> dict[str, Any]:
    """The recipe form of a model (what model_from_dict reads back), for plan.json."""
    layers = []
    for index, layer in enumerate(model.layers):
        table: dict[str, Any] = {"name": layer.name, "op": layer.op}
        previous = model.layers[index - 1].name if index else "input"
        if layer.inputs != (previous,):
            table["inputs"] = list(layer.inputs)
        for field in sorted(_FIELDS[layer.op]):
            value = getattr(layer, field if field != "pool" else "pool")
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Activation):
                value = value.value
            table[field] = value
        layers.append(table)
    return {"name": model.name, "description": model.description, "input": list(model.input.shape), "layers": layers}


def load_recipe(spec: str) -> Model:
    path = resolve_recipe_path(spec)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None
    return model_from_dict(data, str(path))
