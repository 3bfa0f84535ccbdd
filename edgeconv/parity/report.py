"""Parity reports: a terminal table, one JSON document, a Markdown summary, JUnit XML.

JUnit XML is written with the standard library's ElementTree: one <testcase> per
target × check, so any CI shows failing checks natively.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from edgeconv.parity.run import ParityReport, TargetResult
from edgeconv.report.tables import markdown_table, text_table

# "max LSB" is what the LSB check measured: the output, or across rounding families the logits
# of a softmax model (then "out LSB" shows the softmax output for information)
HEADERS = (
    "target",
    "golden",
    "max LSB",
    "allowed",
    "out LSB",
    "differing",
    "SQNR dB",
    "cosine",
    "top-1",
    "time s",
    "verdict",
)


def fmt_number(value, fmt: str) -> str:
    """A metric for a table: '-' when absent, 'inf' for an exact match's SQNR."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, fmt)


def _row(r: TargetResult) -> tuple[str, ...]:
    lsb = r.checks[0]
    return (
        r.target,
        r.golden,
        str(lsb.value),
        str(lsb.limit),
        str(r.lsb_stats["max_lsb"]),
        f"{r.lsb_stats['share_differing']:.2%}",
        fmt_number(r.float_stats["sqnr_db"], ".2f"),
        fmt_number(r.float_stats["cosine"], ".5f"),
        fmt_number(r.float_stats["top1_agreement"], ".1%"),
        f"{r.seconds:.2f}",
        "pass" if r.passed else "FAIL",
    )


def _divergence_lines(r: TargetResult) -> list[str]:
    d = r.divergence
    if d is None:
        return []
    lines = [
        f"{r.target}: first diverging layer {d.layer} ({d.op}): max {d.max_lsb} LSB (allowed {d.allowed}), "
        f"{d.share_differing:.2%} of elements differ"
    ]
    for row in d.layers_before:
        lines.append(
            f"    before: {row['layer']} ({row['op']}): max {row['max_lsb']} LSB, {row['share_differing']:.2%} differ"
        )
    return lines


def to_text(report: ParityReport) -> str:
    lines = [
        f"parity of {report.model}: {report.samples} samples ({report.input_source})",
        "",
        text_table([_row(r) for r in report.results], HEADERS),
    ]
    for r in report.results:
        lines += [
            f"  {c.target} {c.name}: {'ok' if c.passed else 'FAILED'}: {c.message}" for c in r.checks if not c.passed
        ]
        lines += _divergence_lines(r)
    if report.pairwise:
        lines += ["", "pairwise (int8 grid):"]
        lines += [
            f"  {p['a']} vs {p['b']}: max {p['max_lsb']} LSB, {p['share_differing']:.2%} differ"
            for p in report.pairwise
        ]
    lines += ["", f"{'PASS' if report.passed else 'FAIL'} in {report.seconds:.1f} s"]
    return "\n".join(lines)


def json_number(value):
    """JSON has no infinity: an infinite SQNR (identical outputs) is written as a string."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def to_json(report: ParityReport) -> dict:
    return {
        "model": report.model,
        "samples": report.samples,
        "inputs": report.input_source,
        "passed": report.passed,
        "seconds": round(report.seconds, 3),
        "targets": [
            {
                "target": r.target,
                "golden": r.golden,
                "activation_dtype": r.activation_dtype,
                "passed": r.passed,
                "seconds": round(r.seconds, 3),
                "vs_float": {k: json_number(v) for k, v in r.float_stats.items()},
                "vs_golden": r.lsb_stats,
                "checks": [
                    {
                        "name": c.name,
                        "passed": c.passed,
                        "value": json_number(c.value),
                        "limit": c.limit,
                        "message": c.message,
                    }
                    for c in r.checks
                ],
                "first_diverging_layer": None
                if r.divergence is None
                else {
                    "layer": r.divergence.layer,
                    "op": r.divergence.op,
                    "max_lsb": r.divergence.max_lsb,
                    "allowed": r.divergence.allowed,
                    "share_differing": r.divergence.share_differing,
                },
                "per_layer": r.per_layer,
            }
            for r in report.results
        ],
        "pairwise": report.pairwise,
    }


def to_markdown(report: ParityReport) -> str:
    lines = [
        f"## edgeconv parity: {report.model} — {'PASS' if report.passed else 'FAIL'}",
        "",
        f"{report.samples} samples ({report.input_source}); {report.seconds:.1f} s.",
        "",
        markdown_table([_row(r) for r in report.results], HEADERS),
        "",
    ]
    failing = [c for r in report.results for c in r.checks if not c.passed]
    if failing:
        lines += ["### Failed checks", ""] + [f"- **{c.target}** `{c.name}`: {c.message}" for c in failing] + [""]
    divergence = [line for r in report.results for line in _divergence_lines(r)]
    if divergence:
        lines += ["### First diverging layer", "", "```", *divergence, "```", ""]
    if report.pairwise:
        lines += ["### Pairwise", "", "| a | b | max LSB | differing |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {p['a']} | {p['b']} | {p['max_lsb']} | {p['share_differing']:.2%} |" for p in report.pairwise]
        lines.append("")
    return "\n".join(lines)


def to_junit(report: ParityReport) -> bytes:
    checks = [c for r in report.results for c in r.checks]
    failures = sum(not c.passed for c in checks)
    suite = ET.Element(
        "testsuite",
        name=f"edgeconv parity {report.model}",
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{report.seconds:.3f}",
    )
    for r in report.results:
        for c in r.checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"edgeconv.parity.{report.model}.{r.target}",
                name=c.name,
                time=f"{r.seconds:.3f}",
            )
            if not c.passed:
                detail = "\n".join([c.message, *_divergence_lines(r)])
                failure = ET.SubElement(case, "failure", message=c.message, type="ParityCheckFailed")
                failure.text = detail
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    return ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True) + b"\n"
