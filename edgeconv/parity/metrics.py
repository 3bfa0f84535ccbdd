"""Comparison metrics, each a small pure function on numpy arrays.

Against the float reference (real values): SQNR, cosine similarity, RMSE, max abs error,
top-1 agreement. Against an int8 golden reference or between targets (integers on the int8
grid): max difference in LSB, share of elements that differ, mean difference.
"""

from __future__ import annotations

import math
from typing import NotRequired, TypedDict

import numpy as np


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10·log10(Σ ref² / Σ (ref − test)²); +inf when identical, -inf for a zero reference with noise."""
    ref = np.asarray(reference, np.float64).ravel()
    noise = ref - np.asarray(test, np.float64).ravel()
    signal_power, noise_power = float(ref @ ref), float(noise @ noise)
    if noise_power == 0.0:
        return math.inf
    if signal_power == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(a @ b) / norms


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.sqrt(np.mean(d * d)))


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def top1_agreement(reference: np.ndarray, test: np.ndarray) -> float:
    """Share of samples (first axis) whose arg-max class (last axis) agrees."""
    ref = np.asarray(reference).reshape(len(reference), -1)
    tst = np.asarray(test).reshape(len(test), -1)
    return float(np.mean(ref.argmax(axis=1) == tst.argmax(axis=1)))


class LsbStats(TypedDict):
    max_lsb: int
    share_differing: float
    mean_diff: float


class FloatStats(TypedDict):
    sqnr_db: float
    cosine: float
    rmse: float
    max_abs_error: float
    top1_agreement: float | None  # None for a model that is not a classifier
    sqnr_logits_db: NotRequired[float]  # parity adds these where they apply
    accuracy: NotRequired[float]


def lsb_stats(golden: np.ndarray, test: np.ndarray) -> LsbStats:
    """Integer differences on the int8 grid: max |Δ| in LSB, share of elements that differ,
    mean Δ (test − golden, signed: a systematic rounding bias shows up here)."""
    g = np.asarray(golden, np.int64)
    t = np.asarray(test, np.int64)
    if g.shape != t.shape:
        raise ValueError(f"compare: shapes differ, golden {g.shape} vs test {t.shape}")
    d = t - g
    return {
        "max_lsb": int(np.max(np.abs(d))) if d.size else 0,
        "share_differing": float(np.mean(d != 0)) if d.size else 0.0,
        "mean_diff": float(np.mean(d)) if d.size else 0.0,
    }


def float_stats(reference: np.ndarray, test: np.ndarray, classifier: bool) -> FloatStats:
    return {
        "sqnr_db": sqnr_db(reference, test),
        "cosine": cosine_similarity(reference, test),
        "rmse": rmse(reference, test),
        "max_abs_error": max_abs_error(reference, test),
        "top1_agreement": top1_agreement(reference, test) if classifier else None,
    }
