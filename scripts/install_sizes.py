"""Installed size of edgeconv's core and of each extra, measured from this environment.

Usage: python scripts/install_sizes.py [--pyproject pyproject.toml] [--top 3]

Reads the dependencies and extras from pyproject.toml, resolves each one's closure through the
installed distributions' Requires-Dist (importlib.metadata; environment markers evaluated for
this interpreter, `name[extra]` following that extra's requirements) and sums the file sizes
each distribution's RECORD lists (a file without a recorded size is stat'ed). The core is the
closure of [project].dependencies; an extra's figure is what it adds beyond the core, each
distribution counted once per extra (an extra that shares a dependency with another counts it
too; `all` counts the union once). A requirement that is not installed here is named, not
guessed. Figures are the installed bytes (pip's own .pyc included where pip compiled them).
"""

from __future__ import annotations

import argparse
import contextlib
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _installed() -> dict[str, metadata.Distribution]:
    dists: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            dists.setdefault(canonicalize_name(name), dist)
    return dists


def dist_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        if f.size is not None:
            total += int(f.size)
            continue
        with contextlib.suppress(OSError):  # a RECORD entry whose file is gone (RECORD itself has no size)
            total += Path(str(f.locate())).stat().st_size
    return total


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    if not extras:
        return req.marker.evaluate({**default_environment(), "extra": ""})
    return any(req.marker.evaluate({**default_environment(), "extra": e}) for e in extras)


def closure(requirements: list[str], dists: dict[str, metadata.Distribution]) -> tuple[set[str], set[str]]:
    """The installed distributions `requirements` pull in (canonical names) and the ones not installed."""
    found: set[str] = set()
    missing: set[str] = set()
    todo = [(Requirement(r), set()) for r in requirements]
    seen_extras: dict[str, set[str]] = {}
    while todo:
        req, parent_extras = todo.pop()
        if not _applies(req, parent_extras):
            continue
        name = canonicalize_name(req.name)
        dist = dists.get(name)
        if dist is None:
            missing.add(name)
            continue
        wanted = set(req.extras)
        if name in found and wanted <= seen_extras.get(name, set()):
            continue
        found.add(name)
        seen_extras.setdefault(name, set()).update(wanted)
        for text in dist.requires or []:
            sub = Requirement(text)
            # a dependency's own Requires-Dist: the unconditional ones, plus the extras asked for
            if sub.marker is None or _applies(sub, wanted):
                todo.append((sub, set()))
    return found, missing


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", default=str(ROOT / "pyproject.toml"))
    parser.add_argument("--top", type=int, default=3, help="Largest distributions named per row.")
    args = parser.parse_args()
    project = tomllib.loads(Path(args.pyproject).read_text(encoding="utf-8"))["project"]
    dists = _installed()
    sizes = {name: dist_bytes(d) for name, d in dists.items()}

    core, core_missing = closure(project["dependencies"], dists)
    rows = [("core", core, core_missing, sum(sizes[n] for n in core))]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        found, missing = closure(reqs, dists)
        added = found - core
        rows.append((extra, added, missing, sum(sizes[n] for n in added)))

    print(f"installed sizes from {len(dists)} distributions in this environment (MB = 10^6 bytes)")
    print()
    print("| extra | MB | distributions | largest |")
    print("|---|---:|---:|---|")
    for name, members, missing, total in rows:
        largest = sorted(members, key=lambda n: -sizes[n])[: args.top]
        named = ", ".join(f"{dists[n].metadata['Name']} {_mb(sizes[n])}" for n in largest)
        if missing:
            named += f"; not installed here: {', '.join(sorted(missing))}"
        label = name if name == "core" else f"`[{name}]` beyond core"
        print(f"| {label} | {_mb(total)} | {len(members)} | {named} |")


if __name__ == "__main__":
    main()
