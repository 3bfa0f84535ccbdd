"""`edgeconv report`: the self-contained report.html of a build folder (edgeconv/report/html.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeconv.core.errors import InputError


def _read_json(path: str | None, what: str, key: str) -> dict | None:
    if not path:
        return None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"{what} {path}: expected the JSON of 'edgeconv {key} --json', could not read it ({err})"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), list):
        raise InputError(f"{what} {path}: expected the JSON of 'edgeconv {key} --json' (with a 'targets' list)")
    return doc


@click.command()
@click.argument("folder", metavar="DIR")
@click.option("--parity", "parity_path", metavar="P.json", help="Output of 'edgeconv parity DIR --json'.")
@click.option("--bench", "bench_path", metavar="B.json", help="Output of 'edgeconv bench DIR --json'.")
@click.option("-o", "--out", "out_path", metavar="FILE", help="Where to write the page. Default: DIR/report.html.")
def report(folder, parity_path, bench_path, out_path):
    """One self-contained HTML page: layers and budgets, arena plan and flash, parity, latency."""
    from edgeconv.core.io import write_bytes_atomic
    from edgeconv.report.html import render_report

    parity = _read_json(parity_path, "--parity", "parity")
    bench = _read_json(bench_path, "--bench", "bench")
    page = render_report(folder, parity, bench)
    out = Path(out_path) if out_path else Path(folder) / "report.html"
    write_bytes_atomic(out, page.encode("utf-8"), "--out")
    click.echo(f"wrote {out} ({len(page):,} B)")
