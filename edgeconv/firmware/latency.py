"""Predicted inference latency on named Cortex-M boards: a prediction, with its error, never a
measurement (QEMU is not cycle-accurate; the emulator gives instruction counts only).

Model: latency = MACs / (MACs per cycle of the core x clock). The MACs-per-cycle figure of a
core is fitted (geometric mean, i.e. least squares in log space) to the published MLPerf Tiny
closed-division results on boards with that core running TFLM + CMSIS-NN; the error is
reported per published point (predicted vs published). Publications:
- v0.5 (2021), reference submission, NUCLEO-L4R5ZI (Cortex-M4F, 120 MHz), TFLM + CMSIS-NN:
  ResNet-8 704 ms, DS-CNN 182 ms (median);
- v1.1 (2023), 216 MHz Cortex-M7 boards (STM32F767 class), TFLM + CMSIS-NN: ResNet-8
  61.6-62.9 ms, DS-CNN 17.7-18.4 ms (the middle of each range is used).
MACs: ResNet-8 12,501,632 and DS-CNN 2,656,768 as edgeconv counts them for the MLPerf
architectures (models/resnet8.toml, models/ds_cnn.toml).
The two boards' figures are 0.12-0.15 (M4) and 0.68-0.93 (M7) MACs per cycle: the M4 result
is from an older CMSIS-NN than the one linked here, so the M4 prediction is conservative.

A second model uses the emulator's instruction count instead of MACs: latency = instructions x
cycles per instruction / clock, the cycles per instruction fitted the same way to the published
points (with the instruction counts of the same architectures measured here). It follows the
code the kernels really run (im2col, requantization, padding), so it fits the published points
better (M4: 2.84-2.90, M7: 0.45-0.52 cycles per emulated instruction); an M7 figure under 0.5
says those submissions ran fewer instructions than this build (another CMSIS-NN/compiler), so
it is a fitted factor, not a physical CPI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MLPERF_MACS = {"resnet8": 12_501_632, "ds_cnn": 2_656_768}
# instructions per invoke of the same two architectures as TFLM + CMSIS-NN firmware on the
# emulated core (scripts/firmware_figures.py --cpu CPU: models/resnet8.toml, models/ds_cnn.toml;
# the count depends on the architecture, core and kernels, not on the weights); the M7 library,
# compiled for the M7, runs 0.6 % (ResNet-8) and 0.06 % (DS-CNN) more instructions
MEASURED_INSTRUCTIONS_BY_CPU = {
    "cortex-m4": {"resnet8": 29_777_920, "ds_cnn": 7_532_280},
    "cortex-m7": {"resnet8": 29_953_200, "ds_cnn": 7_537_000},
}
MEASURED_INSTRUCTIONS = MEASURED_INSTRUCTIONS_BY_CPU["cortex-m4"]


@dataclass(frozen=True)
class Board:
    name: str
    cpu: str
    mhz: float
    published_ms: dict[str, float]  # MLPerf Tiny model -> published median latency
    source: str


BOARDS = (
    Board(
        "NUCLEO-L4R5ZI",
        "cortex-m4",
        120.0,
        {"resnet8": 704.0, "ds_cnn": 182.0},
        "MLPerf Tiny v0.5 reference submission (TFLM + CMSIS-NN)",
    ),
    Board(
        "216 MHz Cortex-M7 (STM32F767 class)",
        "cortex-m7",
        216.0,
        {"resnet8": (61.6 + 62.9) / 2, "ds_cnn": (17.7 + 18.4) / 2},
        "MLPerf Tiny v1.1 closed division (TFLM + CMSIS-NN), middle of the published range",
    ),
)


def macs_per_cycle(board: Board) -> float:
    """Geometric mean of the board's published MACs per cycle."""
    logs = [math.log(MLPERF_MACS[m] / (ms * 1e-3 * board.mhz * 1e6)) for m, ms in board.published_ms.items()]
    return math.exp(sum(logs) / len(logs))


def predict_ms(macs: int, board: Board) -> float:
    return macs / (macs_per_cycle(board) * board.mhz * 1e6) * 1e3


def fit_errors(board: Board) -> dict[str, float]:
    """Relative error (predicted / published - 1) of the fitted model on each published point."""
    return {m: predict_ms(MLPERF_MACS[m], board) / ms - 1.0 for m, ms in board.published_ms.items()}


def cycles_per_instruction(board: Board) -> float:
    """Geometric mean of published cycles / emulated instructions on the board's MLPerf points."""
    counts = MEASURED_INSTRUCTIONS_BY_CPU[board.cpu]
    logs = [math.log(ms * 1e-3 * board.mhz * 1e6 / counts[m]) for m, ms in board.published_ms.items()]
    return math.exp(sum(logs) / len(logs))


def predict_ms_from_instructions(instructions: int, board: Board) -> float:
    return instructions * cycles_per_instruction(board) / (board.mhz * 1e6) * 1e3


def instruction_fit_errors(board: Board) -> dict[str, float]:
    return {
        m: predict_ms_from_instructions(MEASURED_INSTRUCTIONS_BY_CPU[board.cpu][m], board) / ms - 1.0
        for m, ms in board.published_ms.items()
    }


def predictions(macs: int, instructions: int | None = None) -> list[dict[str, object]]:
    """Predicted ms on each board, with the fit's worst error on the published points."""
    rows = []
    for board in BOARDS:
        errors = fit_errors(board)
        rows.append(
            {
                "board": board.name,
                "cpu": board.cpu,
                "mhz": board.mhz,
                "macs_per_cycle": round(macs_per_cycle(board), 4),
                "predicted_ms": round(predict_ms(macs, board), 2),
                "fit_error_max": round(max(abs(e) for e in errors.values()), 4),
                "published_ms": board.published_ms,
                "source": board.source,
                "label": "prediction (MACs-per-cycle fit to published MLPerf Tiny results), not a measurement",
            }
        )
        if instructions:
            rows[-1]["cycles_per_instruction"] = round(cycles_per_instruction(board), 4)
            rows[-1]["predicted_ms_from_instructions"] = round(predict_ms_from_instructions(instructions, board), 2)
            rows[-1]["instruction_fit_error_max"] = round(
                max(abs(e) for e in instruction_fit_errors(board).values()), 4
            )
    return rows
