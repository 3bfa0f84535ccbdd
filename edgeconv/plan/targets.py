"""Target profiles: one TOML file per target in targets/, validated on load.

A profile says which runtime runs the model, which artifact it takes, how the model is
quantized for it, its memory limits (the planner's default budgets), what its hardware
supports, runtime options to pin, and the parity tolerances.
"""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeconv.core.errors import InputError, UsageError
from edgeconv.core.ir import LAYER_TYPES
from edgeconv.core.sizes import parse_size

ARTIFACTS = ("float_onnx", "qdq_onnx", "int8_tflite", "float_tflite")
ROUNDING_FAMILIES = ("tflite", "fp32", "htp")
ACTIVATION_DTYPES = ("int8", "uint8")


@dataclass(frozen=True)
class Tolerance:
    lsb_policy: str = "exact"  # "exact" (same rounding family as its golden) or "cross_family"
    max_lsb_vs_golden: int = 0  # exact: 0; cross_family: the cap of min(requantizing layers, cap)
    head_lsb: int = 1  # cross_family: softmax on the target's own logits vs the golden softmax
    layer_lsb: int = 1  # cross_family: each layer on the target's own inputs vs the golden op
    # quality floors vs the float reference; defaults from the trained MLPerf ResNet-8 on real
    # photos (README "Parity verdicts"): lowest correct deployment 22.1 dB at the logits,
    # 14.1 dB at the softmax output, 78% top-1 (TF's published int8 file)
    min_sqnr_db: float = 15.0  # at the logits (the softmax input; the output when there is no softmax)
    min_sqnr_output_db: float = 10.0  # at the output
    min_top1_agreement: float = 0.7
    max_accuracy_drop: float = 0.05  # with labels: target accuracy at least float's minus this


@dataclass(frozen=True)
class LatencyModel:
    """Predicted latency = MACs / (MACs per cycle x clock): the firmware issue's fit to the
    published MLPerf Tiny results (edgeconv/firmware/latency.py computes the figures; a profile
    carries them as numbers so that plan/ never imports firmware/)."""

    macs_per_cycle: float
    clock_mhz: float
    source: str = ""

    @property
    def macs_per_ms(self) -> float:
        return self.macs_per_cycle * self.clock_mhz * 1e3

    def predict_ms(self, macs: int) -> float:
        return macs / self.macs_per_ms


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backend: str  # backend module key: cpu, arm, npu, mcu
    packages: tuple[str, ...]  # PyPI packages the runtime needs
    modules: tuple[str, ...]  # import names that show the runtime is installed
    extra: str  # pip extra: pip install 'edgeconv[extra]'
    artifact: str
    activation_dtype: str
    per_channel: bool
    rounding: str
    flash_bytes: int | None
    ram_bytes: int | None
    max_macs: int | None
    ops: tuple[str, ...] | None
    kernels: tuple[int, ...] | None
    strides: tuple[int, ...] | None
    channel_multiple: int  # the planner's width step: widths the target's kernels run fastest
    latency: LatencyModel | None
    options: tuple[tuple[str, Any], ...]
    tolerance: Tolerance
    source: str

    def missing_runtime(self) -> str | None:
        """None when the runtime imports, else what to install (checked without importing it)."""
        for module in self.modules:
            if importlib.util.find_spec(module.split(".")[0]) is None:
                return (
                    f"target {self.name} needs {', '.join(self.packages)} (module {module} not found); "
                    f"install it with: pip install 'edgeconv[{self.extra}]'"
                )
        return None

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


def targets_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "targets"


def target_names() -> list[str]:
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


class _Profile:
    def __init__(self, source: str, data: dict[str, Any]):
        self.source, self.data = source, data

    def get(
        self, section: str | None, key: str, kind: type | tuple, default: Any = ..., check=None, expected: str = ""
    ) -> Any:
        table = self.data if section is None else self.data.get(section, {})
        where = f"{self.source}, field '{key if section is None else section + '.' + key}'"
        if not isinstance(table, dict):
            raise InputError(f"{self.source}, section '{section}': expected a table, got {table!r}")
        if key not in table:
            if default is ...:
                raise InputError(f"{where}: required, missing")
            return default
        value = table[key]
        if (
            not isinstance(value, kind)
            or (isinstance(value, bool) and kind is not bool)
            or (check and not check(value))
        ):
            raise InputError(f"{where}: expected {expected or kind}, got {value!r}")
        return value


def _size(p: _Profile, key: str) -> int | None:
    value = p.get("memory", key, str, None, expected="a size like 1MB")
    if value is None:
        return None
    try:
        return parse_size(value, f"{p.source}, field 'memory.{key}'")
    except UsageError as err:
        raise InputError(str(err)) from None


def _int_list(p: _Profile, section: str, key: str) -> tuple[int, ...] | None:
    value = p.get(
        section, key, list, None, lambda v: all(isinstance(i, int) and i > 0 for i in v), "a list of positive integers"
    )
    return None if value is None else tuple(value)


def _latency(p: _Profile) -> LatencyModel | None:
    if "latency" not in p.data:
        return None
    positive = (lambda v: v > 0, "a positive number")
    return LatencyModel(
        macs_per_cycle=float(p.get("latency", "macs_per_cycle", (int, float), ..., *positive)),
        clock_mhz=float(p.get("latency", "clock_mhz", (int, float), ..., *positive)),
        source=p.get("latency", "source", str, ""),
    )


def parse_profile(data: dict[str, Any], source: str) -> Target:
    p = _Profile(source, data)
    ops = p.get(
        "supports",
        "ops",
        list,
        None,
        lambda v: all(o in LAYER_TYPES for o in v),
        f"a list of ops from {', '.join(LAYER_TYPES)}",
    )
    tol = data.get("tolerance", {})
    if not isinstance(tol, dict):
        raise InputError(f"{source}, section 'tolerance': expected a table, got {tol!r}")
    options = p.get(None, "options", dict, {})
    return Target(
        name=p.get(None, "name", str, check=bool, expected="a target name"),
        description=p.get(None, "description", str, ""),
        backend=p.get(
            None,
            "backend",
            str,
            check=lambda v: v in ("cpu", "arm", "npu", "mcu", "mcu_qemu", "reference"),
            expected="one of cpu, arm, npu, mcu, mcu_qemu, reference",
        ),
        packages=tuple(p.get("runtime", "packages", list, [])),
        modules=tuple(p.get("runtime", "modules", list, [])),
        extra=p.get("runtime", "extra", str, "all"),
        artifact=p.get(
            None, "artifact", str, check=lambda v: v in ARTIFACTS, expected=f"one of {', '.join(ARTIFACTS)}"
        ),
        activation_dtype=p.get(
            "quant", "activation_dtype", str, "int8", lambda v: v in ACTIVATION_DTYPES, "int8 or uint8"
        ),
        per_channel=p.get("quant", "per_channel", bool, True, expected="true or false"),
        rounding=p.get(
            "quant",
            "rounding",
            str,
            "tflite",
            lambda v: v in ROUNDING_FAMILIES,
            f"one of {', '.join(ROUNDING_FAMILIES)}",
        ),
        flash_bytes=_size(p, "flash"),
        ram_bytes=_size(p, "ram"),
        max_macs=p.get("memory", "max_macs", int, None, lambda v: v > 0, "a positive integer"),
        ops=None if ops is None else tuple(ops),
        kernels=_int_list(p, "supports", "kernels"),
        strides=_int_list(p, "supports", "strides"),
        channel_multiple=p.get(
            "supports", "channel_multiple", int, 8, lambda v: 1 <= v <= 64, "an integer from 1 to 64"
        ),
        latency=_latency(p),
        options=tuple(sorted(options.items())),
        tolerance=Tolerance(
            lsb_policy=p.get(
                "tolerance",
                "lsb_policy",
                str,
                "exact",
                lambda v: v in ("exact", "cross_family"),
                "exact or cross_family",
            ),
            max_lsb_vs_golden=p.get("tolerance", "max_lsb_vs_golden", int, 0, lambda v: v >= 0, "an integer >= 0"),
            head_lsb=p.get("tolerance", "head_lsb", int, 1, lambda v: v >= 0, "an integer >= 0"),
            layer_lsb=p.get("tolerance", "layer_lsb", int, 1, lambda v: v >= 0, "an integer >= 0"),
            min_sqnr_db=float(p.get("tolerance", "min_sqnr_db", (int, float), Tolerance.min_sqnr_db)),
            min_sqnr_output_db=float(
                p.get("tolerance", "min_sqnr_output_db", (int, float), Tolerance.min_sqnr_output_db)
            ),
            min_top1_agreement=float(
                p.get(
                    "tolerance",
                    "min_top1_agreement",
                    (int, float),
                    Tolerance.min_top1_agreement,
                    lambda v: 0 <= v <= 1,
                    "a number in [0, 1]",
                )
            ),
            max_accuracy_drop=float(
                p.get(
                    "tolerance",
                    "max_accuracy_drop",
                    (int, float),
                    Tolerance.max_accuracy_drop,
                    lambda v: 0 <= v <= 1,
                    "a number in [0, 1]",
                )
            ),
        ),
        source=source,
    )


def load_target(spec: str, option: str = "--target") -> Target:
    """A target is a name from targets/ or a path to a profile .toml; errors name `option`."""
    path = Path(spec)
    if path.suffix != ".toml":
        path = targets_dir() / f"{spec}.toml"
        if not path.is_file():
            raise UsageError(f"{option}: expected one of {', '.join(target_names())} or a profile .toml, got {spec!r}")
    elif not path.is_file():
        raise UsageError(f"{option}: profile file {spec} not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None
    return parse_profile(data, str(path))


def all_targets() -> list[Target]:
    return [load_target(name) for name in target_names()]
