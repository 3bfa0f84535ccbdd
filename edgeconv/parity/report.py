"""Parity reports: a terminal table, one JSON document, a Markdown summary, JUnit XML.

The kinds of verdict (parity.policy: deployment, quality, source) are kept apart everywhere:
their own columns and verdict in the tables, their own section per target in JSON, their own
<testsuite> in JUnit XML (one <testcase> per target x check, written with the standard
library's ElementTree, so any CI shows failing checks natively).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from edgeconv.parity.policy import DEPLOYMENT, EXIT_BITS, KINDS, QUALITY, SOURCE
from edgeconv.parity.run import ParityReport, TargetResult
from edgeconv.report.tables import markdown_table, text_table

# deployment: "max LSB" is the worst layer against its allowance ("at" names it), "out LSB" the
# output of the artifact as deployed; quality: SQNR at the logits and at the output, top-1
HEADERS = (
    "target",
    "golden",
    "max LSB",
    "allowed",
    "at",
    "out LSB",
    "deploy",
    "SQNR logits",
    "SQNR out",
    "top-1",
    "quality",
    "time s",
)


def fmt_number(value, fmt: str) -> str:
    """A metric for a table: '-' when absent, 'inf' for an exact match's SQNR."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, fmt)


def _verdict(value: bool | None) -> str:
    return "-" if value is None else ("pass" if value else "FAIL")


def _deploy_headline(r: TargetResult):
    """The deployment check shown in the table: every layer when compared, else the output."""
    layers = [c for c in r.checks if c.name == "lsb_every_layer"]
    if layers:
        c = layers[0]
        row = next((p for p in r.per_layer if p["max_lsb"] == c.value and p["allowed"] == c.limit), None)
        return c.value, c.limit, (row["layer"] if row else "-") if c.value else "all"
    c = next(c for c in r.checks if c.kind == DEPLOYMENT)
    return c.value, c.limit, "output"


def _row(r: TargetResult) -> tuple[str, ...]:
    value, limit, at = _deploy_headline(r)
    return (
        r.target,
        r.golden,
        str(value),
        str(limit),
        at,
        str(r.lsb_stats["max_lsb"]),
        _verdict(r.verdict(DEPLOYMENT)),
        fmt_number(r.float_stats.get("sqnr_logits_db"), ".2f"),
        fmt_number(r.float_stats["sqnr_db"], ".2f"),
        fmt_number(r.float_stats["top1_agreement"], ".1%"),
        _verdict(r.verdict(QUALITY)),
        f"{r.seconds:.2f}",
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


def _verdict_line(report: ParityReport) -> str:
    parts = [f"{k} {_verdict(report.verdict(k))}" for k in KINDS if report.verdict(k) is not None]
    return ", ".join(parts)


def _pins_line(r: TargetResult) -> str:
    pins = dict(r.pins)
    packages = pins.pop("packages", {})
    text = ", ".join(f"{k} {v}" for k, v in packages.items())
    extra = ", ".join(f"{k} {v}" for k, v in pins.items())
    return f"  {r.target}: {text}" + (f"; {extra}" if extra else "")


def to_text(report: ParityReport) -> str:
    lines = [
        f"parity of {report.model}: {report.samples} samples ({report.input_source})",
        "",
        text_table([_row(r) for r in report.results], HEADERS),
    ]
    for c in report.source_checks:
        lines.append(f"  source: {'ok' if c.passed else 'FAILED'}: {c.message}")
    if report.float_accuracy is not None:
        accs = ", ".join(f"{r.target} {r.float_stats['accuracy']:.1%}" for r in report.results)
        lines.append(f"  accuracy with labels: float {report.float_accuracy:.1%}, {accs}")
    for kind in KINDS:
        for r in report.results:
            lines += [f"  {c.target} {kind} {c.name}: FAILED: {c.message}" for c in r.of_kind(kind) if not c.passed]
    for r in report.results:
        lines += _divergence_lines(r)
    if report.pairwise:
        lines += ["", "pairwise at the output (int8 grid, informational):"]
        lines += [
            f"  {p['a']} vs {p['b']}: max {p['max_lsb']} LSB, {p['share_differing']:.2%} differ"
            for p in report.pairwise
        ]
    lines += ["", "pinned:", *[_pins_line(r) for r in report.results]]
    lines += ["", f"{'PASS' if report.passed else 'FAIL'} ({_verdict_line(report)}) in {report.seconds:.1f} s"]
    return "\n".join(lines)


def json_number(value):
    """JSON has no infinity: an infinite SQNR (identical outputs) is written as a string."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _check_json(c) -> dict:
    return {
        "name": c.name,
        "kind": c.kind,
        "passed": c.passed,
        "value": json_number(c.value),
        "limit": c.limit,
        "message": c.message,
    }


def _rows_json(rows: list[dict]) -> list[dict]:
    """Per-layer rows for JSON: an exact layer's infinite SQNR as the string "inf"."""
    return [{k: json_number(v) for k, v in row.items()} for row in rows]


def to_json(report: ParityReport) -> dict:
    return {
        "model": report.model,
        "samples": report.samples,
        "inputs": report.input_source,
        "passed": report.passed,
        "verdicts": {k: report.verdict(k) for k in KINDS},
        "exit_code": report.exit_code,
        "exit_bits": EXIT_BITS,
        "seconds": round(report.seconds, 3),
        "source": None
        if report.source_stats is None
        else {
            **{k: json_number(v) for k, v in report.source_stats.items()},
            "checks": [_check_json(c) for c in report.source_checks],
        },
        "float_accuracy": report.float_accuracy,
        "targets": [
            {
                "target": r.target,
                "golden": r.golden,
                "activation_dtype": r.activation_dtype,
                "passed": r.passed,
                "seconds": round(r.seconds, 3),
                "pins": r.pins,
                DEPLOYMENT: {
                    "passed": r.verdict(DEPLOYMENT),
                    "vs_golden": r.lsb_stats,
                    "checks": [_check_json(c) for c in r.of_kind(DEPLOYMENT)],
                    "first_diverging_layer": None
                    if r.divergence is None
                    else {
                        "layer": r.divergence.layer,
                        "op": r.divergence.op,
                        "max_lsb": r.divergence.max_lsb,
                        "allowed": r.divergence.allowed,
                        "share_differing": r.divergence.share_differing,
                    },
                    "per_layer": _rows_json(r.per_layer),
                },
                QUALITY: {
                    "passed": r.verdict(QUALITY),
                    "vs_float": {k: json_number(v) for k, v in r.float_stats.items()},
                    "checks": [_check_json(c) for c in r.of_kind(QUALITY)],
                },
                # flat views kept for existing readers
                "vs_golden": r.lsb_stats,
                "vs_float": {k: json_number(v) for k, v in r.float_stats.items()},
                "checks": [_check_json(c) for c in r.checks],
                "per_layer": _rows_json(r.per_layer),
            }
            for r in report.results
        ],
        "pairwise": report.pairwise,
    }


def to_markdown(report: ParityReport) -> str:
    lines = [
        f"## edgeconv parity: {report.model} — {'PASS' if report.passed else 'FAIL'} ({_verdict_line(report)})",
        "",
        f"{report.samples} samples ({report.input_source}); {report.seconds:.1f} s.",
        "",
        markdown_table([_row(r) for r in report.results], HEADERS),
        "",
    ]
    if report.source_checks:
        lines += (
            ["### Source check", ""]
            + [f"- {'ok' if c.passed else '**FAILED**'}: {c.message}" for c in report.source_checks]
            + [""]
        )
    if report.float_accuracy is not None:
        lines += ["### Accuracy with labels", "", "| model | accuracy |", "| --- | ---: |"]
        lines.append(f"| float reference | {report.float_accuracy:.2%} |")
        lines += [f"| {r.target} (int8) | {r.float_stats['accuracy']:.2%} |" for r in report.results] + [""]
    for kind, title in ((DEPLOYMENT, "Deployment"), (QUALITY, "Quality")):
        failing = [c for r in report.results for c in r.of_kind(kind) if not c.passed]
        if failing:
            lines += [f"### Failed {title.lower()} checks", ""]
            lines += [f"- **{c.target}** `{c.name}`: {c.message}" for c in failing] + [""]
    divergence = [line for r in report.results for line in _divergence_lines(r)]
    if divergence:
        lines += ["### First diverging layer", "", "```", *divergence, "```", ""]
    if report.pairwise:
        lines += ["### Pairwise (informational)", "", "| a | b | max LSB | differing |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {p['a']} | {p['b']} | {p['max_lsb']} | {p['share_differing']:.2%} |" for p in report.pairwise]
        lines.append("")
    lines += ["### Pinned", "", *[f"-{_pins_line(r)[1:]}" for r in report.results], ""]
    return "\n".join(lines)


def to_junit(report: ParityReport) -> bytes:
    """One <testsuite> per kind of verdict (deployment, quality, source), one <testcase> per
    target x check in it."""
    root = ET.Element("testsuites")
    per_target = {r.target: r for r in report.results}
    for kind in KINDS:
        checks = [c for c in report.checks if c.kind == kind]
        if not checks:
            continue
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"edgeconv parity {kind} {report.model}",
            tests=str(len(checks)),
            failures=str(sum(not c.passed for c in checks)),
            errors="0",
            skipped="0",
            time=f"{report.seconds:.3f}",
        )
        for c in checks:
            r = per_target.get(c.target)
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"edgeconv.parity.{kind}.{report.model}.{c.target}",
                name=c.name,
                time=f"{r.seconds:.3f}" if r else "0.000",
            )
            if not c.passed:
                detail = "\n".join([c.message, *(_divergence_lines(r) if r and kind == DEPLOYMENT else [])])
                failure = ET.SubElement(case, "failure", message=c.message, type=f"Parity{kind.capitalize()}Failed")
                failure.text = detail
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


__all__ = ["SOURCE", "fmt_number", "json_number", "to_json", "to_junit", "to_markdown", "to_text"]
