"""report.html: one self-contained page (no network) with the build's numbers as pictures.

Sections (each a <section id="...">, every plot an inline SVG written by matplotlib):
  model    the per-layer table (op, input -> output, params, MACs, int8 bytes, input, weight
           and output scales)
           and the totals against each budget as bars;
  memory   the TFLM arena plan as the classic picture (operator index across, arena offset up,
           one box per activation tensor over its lifetime, the peak marked with the tensors
           alive there) from plan/arena.py's model, and the flash per layer (weights, biases,
           quantization records, operator overhead) from plan/memory.py's size model;
  parity   (with a parity JSON) per target x layer two heat maps, max LSB against the golden
           (deployment) and SQNR against float (quality), the first diverging layer boxed (SVG
           id "first-lsb-<target>"); deployment and quality verdicts in separate tables; the grids
           as JSON in <script id=parity-data>;
  latency  (with a bench JSON) median int8 and float latency per target.

The arena boxes carry SVG ids "arena-<tensor>" and the section data attributes with the
model's numbers (data-head-bytes, data-peak-op), so a browser test can check the picture
against the model. matplotlib is imported lazily (the report extra / `all`): importing edgeconv
stays light. Output is deterministic: SVG ids and metadata dates are pinned.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from edgeconv.core.errors import MissingRuntime

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
td:first-child,th:first-child,td.t{text-align:left}
.pass{color:#17692a;font-weight:600}.fail{color:#a4161a;font-weight:600}
.note{color:#555;font-size:.9em}figure{margin:1em 0}svg{max-width:100%;height:auto}
"""

CHECK_JS = """
// Self-check run by the browser test (and harmless for a reader): every section has a drawn
// plot or table, and each arena box's drawn height is recorded next to its tensor size.
(function () {
  const problems = [];
  for (const s of document.querySelectorAll('section')) {
    const drawn = [...s.querySelectorAll('svg, table')].filter(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0;
    });
    s.dataset.rendered = drawn.length;
    if (!drawn.length) problems.push(s.id + ': nothing drawn');
  }
  for (const g of document.querySelectorAll('g[id^="arena-"]')) {
    const r = g.getBoundingClientRect();
    g.setAttribute('data-drawn-height', r.height.toFixed(3));
    g.setAttribute('data-drawn-width', r.width.toFixed(3));
  }
  for (const d of document.querySelectorAll('script[type="application/json"]')) {
    try { JSON.parse(d.textContent); } catch (e) { problems.push(d.id + ': ' + e); }
  }
  const parity = document.getElementById('parity-data');
  if (parity) {  // one drawn box per target with a first diverging layer
    const want = JSON.parse(parity.textContent).targets.filter(t => t.first_diverging_layer).length;
    const boxes = new Set([...document.querySelectorAll('g[id^="first-lsb-"]')]
      .filter(g => g.getBoundingClientRect().width > 0).map(g => g.id));
    document.body.dataset.firstBoxes = boxes.size;
    if (boxes.size !== want) problems.push('parity: ' + boxes.size + ' first-diverging boxes, expected ' + want);
  }
  document.body.dataset.check = problems.length ? problems.join('; ') : 'ok';
  console.log('edgeconv-report-check ' + document.body.dataset.check);
})();
"""


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise MissingRuntime(
            "report.html: matplotlib is not installed; install it with: pip install 'edgeconv[report]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "edgeconv"  # deterministic SVG ids
    plt.rcParams["svg.fonttype"] = "none"  # text stays text (smaller, searchable)
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "edgeconv"})
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG in HTML


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json_script(element_id: str, doc: Any) -> str:
    """A JSON data block: a script's text is not HTML-decoded, so it is not entity-escaped;
    only "</" is written as "<\\/" (still the same JSON) so the block cannot close early."""
    text = json.dumps(doc, sort_keys=True).replace("</", "<\\/")
    return f"<script type=application/json id={element_id}>{text}</script>"


# -- data -----------------------------------------------------------------------------------------


def arena_boxes(analysis) -> dict:
    """The arena model's picture data: per activation tensor its offset, aligned size and
    lifetime (first op, last op) as plan/arena.py's greedy planner places it; the head bytes;
    the op where the most bytes are alive and the tensors alive there."""
    from edgeconv.plan.arena import greedy_placements, lifetimes, tflite_graph

    g = tflite_graph(analysis)
    life = lifetimes(g, analysis.model.output)
    placed = greedy_placements(g.activations, life)
    head = max((o + s for o, s, _, _ in placed.values()), default=0)
    alive_bytes = [sum(s for _, s, f, e in placed.values() if f <= i <= e) for i in range(max(1, len(g.ops)))]
    peak_op = max(range(len(alive_bytes)), key=lambda i: alive_bytes[i])
    return {
        "ops": [op for op, _, _, _ in g.ops],
        "tensors": {n: {"offset": o, "size": s, "first": f, "last": e} for n, (o, s, f, e) in placed.items()},
        "head_bytes": head,
        "peak_op": peak_op,
        "peak_alive_bytes": alive_bytes[peak_op],
        "alive_at_peak": [n for n, (_, _, f, e) in placed.items() if f <= peak_op <= e],
    }


def flash_per_layer(analysis) -> list[dict]:
    """Per layer: int8 weight bytes, int32 bias bytes, per-channel quantization records and
    operator overhead, as plan/memory.py's size model counts them (file base bytes apart)."""
    from edgeconv.plan import memory as mem

    rows = []
    for layer, info in zip(analysis.model.layers, analysis.layers):
        rec = mem.FILE_RECORDS.handler(layer)(info)
        rows.append(
            {
                "layer": info.name,
                "weights": info.params - rec.bias_channels,
                "biases": 4 * rec.bias_channels,
                "quant_records": 2 * mem.PER_CHANNEL_QUANT_BYTES * rec.bias_channels,
                "overhead": mem.OPERATOR_BYTES * rec.operators
                + mem.WEIGHTED_OPERATOR_BYTES * rec.weighted
                + mem.RESHAPE_BYTES * rec.reshapes,
            }
        )
    return rows


# -- sections -------------------------------------------------------------------------------------


def _model_section(plt, build, plan: dict) -> str:
    analysis, q = build.analysis, build.qparams
    rows = []
    for layer, info in zip(analysis.model.layers, analysis.layers):
        act = q.activations.get(info.name)
        scale = f"{act.scale[0]:.4g}" if act else ""
        ins = [q.activations.get(src) for src in layer.inputs]
        in_scale = " ".join(f"{t.scale[0]:.4g}" for t in ins if t is not None)
        wq = q.weights.get(info.name)
        # per-channel weight scales as their range (one per output channel)
        w_scale = (
            f"{min(wq.scale):.3g}–{max(wq.scale):.3g} ({len(wq.scale)})"
            if wq is not None and len(wq.scale) > 1
            else (f"{wq.scale[0]:.4g}" if wq is not None else "")
        )
        w, h, c = info.out_shape
        rows.append(
            f"<tr><td>{_esc(info.name)}</td><td class=t>{_esc(info.op)}</td>"
            f"<td>{'x'.join(map(str, info.in_shape))} → {w}x{h}x{c}</td><td>{info.params:,}</td>"
            f"<td>{info.macs:,}</td><td>{info.out_elements:,}</td><td>{in_scale}</td><td>{w_scale}</td>"
            f"<td>{scale}</td></tr>"
        )
    totals, budgets = plan["summary"]["totals"], plan["summary"]["budgets"]
    tflite = plan["summary"].get("int8_tflite_bytes")
    bars = [
        (
            "model bytes (int8 .tflite)" if tflite else "model bytes (predicted)",
            tflite or totals["predicted_model_bytes"],
            budgets.get("model_bytes"),
        ),
        ("peak RAM (activations)", totals["predicted_peak_ram_bytes"], budgets.get("ram_bytes")),
        ("MACs", totals["macs"], budgets.get("macs")),
    ]
    fig, ax = plt.subplots(figsize=(7, 1.9))
    labels = []
    for i, (label, used, limit) in enumerate(bars):
        share = used / limit if limit else 0.0
        ax.barh(i, min(share, 1.5), color="#a4161a" if share > 1 else "#2b6cb0")
        text = f"{used:,} of {limit:,} ({100 * share:.1f}%)" if limit else f"{used:,} (no limit)"
        ax.text(min(share, 1.5) + 0.01, i, text, va="center", fontsize=8)
        labels.append(label)
    ax.axvline(1.0, color="#444", lw=1, ls="--")
    ax.set_yticks(range(len(bars)), labels, fontsize=8)
    ax.set_xlim(0, 1.6)
    ax.set_xlabel("share of the budget", fontsize=8)
    ax.invert_yaxis()
    return (
        '<section id="model"><h2>Model</h2>'
        f"<figure id=budget-bars>{_svg(fig)}</figure>"
        "<table id=layers><tr><th>layer</th><th>op</th><th>input → output (WxHxC)</th><th>params</th><th>MACs</th>"
        "<th>int8 out bytes</th><th>in scale</th><th>weight scales (channels)</th><th>out scale</th></tr>"
        f"{''.join(rows)}"
        f"<tr><th>total</th><th></th><th></th><th>{totals['params']:,}</th><th>{totals['macs']:,}</th>"
        f"<th></th><th></th><th></th><th></th></tr></table></section>"
    )


def _memory_section(plt, build) -> str:
    from matplotlib.patches import Rectangle

    analysis = build.analysis
    arena = arena_boxes(analysis)
    n_ops = max(1, len(arena["ops"]))
    fig, ax = plt.subplots(figsize=(8, 4))
    cmap = plt.get_cmap("tab20")
    for i, (name, t) in enumerate(arena["tensors"].items()):
        alive = name in arena["alive_at_peak"]
        rect = Rectangle(
            (t["first"] - 0.4, t["offset"]),
            t["last"] - t["first"] + 0.8,
            t["size"],
            facecolor=cmap(i % 20),
            edgecolor="#111" if alive else "#666",
            linewidth=1.6 if alive else 0.5,
            alpha=0.9,
        )
        rect.set_gid(f"arena-{name}")
        ax.add_patch(rect)
        if t["size"] > 0.06 * max(1, arena["head_bytes"]):
            ax.text(
                (t["first"] + t["last"]) / 2, t["offset"] + t["size"] / 2, name, ha="center", va="center", fontsize=7
            )
    ax.axvline(arena["peak_op"], color="#a4161a", ls="--", lw=1)
    ax.axhline(arena["head_bytes"], color="#a4161a", ls=":", lw=1)
    ax.text(arena["peak_op"], arena["head_bytes"] * 1.02, f"peak: op {arena['peak_op']}", color="#a4161a", fontsize=8)
    ax.set_xlim(-0.6, n_ops - 0.4)
    ax.set_ylim(0, arena["head_bytes"] * 1.1 or 1)
    ax.set_xticks(range(n_ops), [f"{i}\n{op}" for i, op in enumerate(arena["ops"])], fontsize=6, rotation=90)
    ax.set_xlabel("operator index (TFLite op sequence)", fontsize=8)
    ax.set_ylabel("arena offset (bytes)", fontsize=8)
    arena_svg = _svg(fig)

    flash = flash_per_layer(analysis)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(flash) + 1))
    left = [0] * len(flash)
    for key, color in (
        ("weights", "#2b6cb0"),
        ("biases", "#dd6b20"),
        ("quant_records", "#38a169"),
        ("overhead", "#718096"),
    ):
        values = [r[key] for r in flash]
        ax.barh(range(len(flash)), values, left=left, color=color, label=key.replace("_", " "))
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(range(len(flash)), [r["layer"] for r in flash], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("bytes in the int8 .tflite (size model)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    flash_svg = _svg(fig)
    alive_names = ", ".join(arena["alive_at_peak"])
    return (
        f'<section id="memory" data-head-bytes="{arena["head_bytes"]}" data-peak-op="{arena["peak_op"]}" '
        f'data-tensors="{len(arena["tensors"])}"><h2>Memory</h2>'
        f"<p>TFLM arena head (activations) as the greedy planner places it: {arena['head_bytes']:,} B; "
        f"peak at op {arena['peak_op']} ({_esc(arena['ops'][arena['peak_op']] if arena['ops'] else '')}) with "
        f"{arena['peak_alive_bytes']:,} B alive: {_esc(alive_names)} (outlined).</p>"
        f"<figure id=arena-plan>{arena_svg}</figure>"
        f"{_json_script('arena-data', arena)}"
        f"<h3>Flash per layer</h3><figure id=flash>{flash_svg}</figure></section>"
    )


def _parity_section(plt, parity: dict | None) -> str:
    if not parity:
        return (
            '<section id="parity"><h2>Parity</h2><p class=note>No parity results: run '
            "<code>edgeconv parity DIR --json &gt; parity.json</code> and "
            "<code>edgeconv report DIR --parity parity.json</code>.</p><table><tr><td>none</td></tr></table></section>"
        )
    targets = parity["targets"]
    grids = parity_grids(targets)
    heat = _heat_map(plt, grids, "max_lsb", "Reds", "max LSB vs golden (layer on its own inputs)")
    sqnr_heat = _heat_map(plt, grids, "sqnr_db", "RdYlGn", "SQNR dB vs float") if grids["has_sqnr"] else ""

    def verdict(ok) -> str:
        return "<span class=pass>pass</span>" if ok else "<span class=fail>FAIL</span>"

    dep, qual = [], []
    for t in targets:
        d, q = t.get("deployment") or {}, t.get("quality") or {}
        first = d.get("first_diverging_layer")
        dep.append(
            f"<tr><td>{_esc(t['target'])}</td><td class=t>{_esc(t['golden'])}</td>"
            f"<td>{_esc((d.get('vs_golden') or {}).get('max_lsb', ''))}</td>"
            f"<td class=t>{_esc(first['layer']) + ' (' + str(first['max_lsb']) + ' LSB)' if first else '—'}</td>"
            f"<td>{verdict(d.get('passed', t['passed']))}</td></tr>"
        )
        f = q.get("vs_float") or t.get("vs_float") or {}

        def num(key, fmt="{:.2f}", f=f) -> str:
            v = f.get(key)
            return fmt.format(v) if isinstance(v, (int, float)) else "—"

        qual.append(
            f"<tr><td>{_esc(t['target'])}</td><td>{num('sqnr_logits_db')}</td><td>{num('sqnr_db')}</td>"
            f"<td>{num('top1_agreement', '{:.1%}')}</td><td>{verdict(q.get('passed', t['passed']))}</td></tr>"
        )
    verdicts = parity.get("verdicts", {})
    return (
        f'<section id="parity" data-targets="{len(targets)}"><h2>Parity</h2>'
        f"<p>{_esc(parity.get('model'))}: {parity.get('samples')} samples ({_esc(parity.get('inputs'))}); "
        f"deployment {_word(verdicts.get('deployment'))}, quality {_word(verdicts.get('quality'))}. "
        "Boxed cell: the first layer over its allowance (none boxed: every layer within it).</p>"
        f"<figure id=parity-heatmap>{heat}</figure>"
        + (f"<figure id=parity-sqnr>{sqnr_heat}</figure>" if sqnr_heat else "")
        + _json_script("parity-data", grids)
        + "<h3>Deployment (int8 vs the target's golden)</h3><table id=deployment><tr><th>target</th><th>golden</th>"
        f"<th>max LSB</th><th>first diverging layer</th><th>verdict</th></tr>{''.join(dep)}</table>"
        "<h3>Quality (vs the float reference)</h3><table id=quality><tr><th>target</th><th>SQNR logits dB</th>"
        f"<th>SQNR output dB</th><th>top-1 agreement</th><th>verdict</th></tr>{''.join(qual)}</table></section>"
    )


def _rows(t: dict) -> list[dict]:
    return (t.get("deployment") or {}).get("per_layer") or t.get("per_layer") or []


def parity_grids(targets: list[dict]) -> dict:
    """The heat maps' data: layers (in order of first appearance), per target its per-layer max
    LSB and SQNR (None where not compared; "inf" for an exact layer) and its first diverging layer."""
    layers: list[str] = []
    for t in targets:
        layers += [row["layer"] for row in _rows(t) if row["layer"] not in layers]
    out: dict = {"layers": layers, "targets": [], "has_sqnr": False}
    for t in targets:
        by = {row["layer"]: row for row in _rows(t)}
        first = (t.get("deployment") or {}).get("first_diverging_layer")
        out["targets"].append(
            {
                "target": t["target"],
                "max_lsb": [by[n]["max_lsb"] if n in by else None for n in layers],
                "sqnr_db": [by[n].get("sqnr_db") if n in by else None for n in layers],
                "first_diverging_layer": first["layer"] if first else None,
            }
        )
        out["has_sqnr"] |= any(row.get("sqnr_db") is not None for row in _rows(t))
    return out


def _heat_map(plt, grids: dict, key: str, cmap: str, label: str) -> str:
    """A target x layer heat map of one figure, the first diverging layer boxed (SVG id
    "first-lsb-<target>" / "first-sqnr-<target>")."""
    import numpy as np

    layers, targets = grids["layers"], grids["targets"]

    def number(v) -> float:
        if v == "inf":
            return np.inf
        return np.nan if v is None else float(v)

    grid = np.array([[number(v) for v in t[key]] for t in targets]).reshape(len(targets), len(layers))
    finite = grid[np.isfinite(grid)]
    if key == "sqnr_db":  # an exact layer (inf) is drawn at the top of the scale
        top = max(40.0, float(finite.max()) if finite.size else 40.0)
        grid = np.where(np.isposinf(grid), top, grid)
        vmin, vmax = 0.0, top
    else:
        vmin, vmax = 0.0, max(1.0, float(finite.max()) if finite.size else 1.0)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(layers) + 2), 0.5 * len(targets) + 1.6))
    im = ax.imshow(grid if layers else np.zeros((len(targets), 1)), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    for i, t in enumerate(targets):
        for j in range(len(layers)):
            v = t[key][j]
            if v is not None:
                text = "inf" if v == "inf" else (f"{int(v)}" if key == "max_lsb" else f"{float(v):.0f}")
                dark = key == "max_lsb" and float(v) > 0.6 * vmax  # white on the darkest reds
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="#fff" if dark else "#000")
        first = t["first_diverging_layer"]
        if first in layers:
            box = plt.Rectangle((layers.index(first) - 0.5, i - 0.5), 1, 1, fill=False, ec="#000", lw=2.5)
            box.set_gid(f"first-{'lsb' if key == 'max_lsb' else 'sqnr'}-{t['target']}")
            ax.add_patch(box)
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(targets)), [t["target"] for t in targets], fontsize=8)
    fig.colorbar(im, ax=ax, label=label)
    return _svg(fig)


def _word(verdict) -> str:
    return {True: "pass", False: "FAIL", None: "not run"}.get(verdict, _esc(verdict))


def _latency_section(plt, bench: dict | None) -> str:
    if not bench:
        return (
            '<section id="latency"><h2>Latency</h2><p class=note>No bench results: run '
            "<code>edgeconv bench DIR --json &gt; bench.json</code> and "
            "<code>edgeconv report DIR --bench bench.json</code>.</p><table><tr><td>none</td></tr></table></section>"
        )
    rows = bench["targets"]
    names = [r["target"] for r in rows]
    int8 = [r["int8_ms"]["median_ms"] for r in rows]
    flt = [(r.get("float_ms") or {}).get("median_ms") or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.2))
    y = range(len(rows))
    ax.barh([i - 0.2 for i in y], int8, height=0.4, color="#2b6cb0", label="int8")
    ax.barh([i + 0.2 for i in y], flt, height=0.4, color="#a0aec0", label="float")
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"median ms per inference (batch 1, {bench.get('repeat')} runs)", fontsize=8)
    ax.legend(fontsize=7)
    return f'<section id="latency" data-targets="{len(rows)}"><h2>Latency</h2><figure id=latency-bars>{_svg(fig)}</figure></section>'


def render_report(folder: str | Path, parity: dict | None = None, bench: dict | None = None) -> str:
    """The report page of a build folder, with parity / bench JSON documents if given."""
    from edgeconv.artifacts.folder import load_build

    plt = _plt()
    build = load_build(folder)
    plan = json.loads((Path(folder) / "plan.json").read_text(encoding="utf-8"))
    name = build.analysis.model.name
    body = "".join(
        [
            _model_section(plt, build, plan),
            _memory_section(plt, build),
            _parity_section(plt, parity),
            _latency_section(plt, bench),
        ]
    )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>edgeconv report: {_esc(name)}</title><style>{CSS}</style></head><body>"
        f"<h1>edgeconv report: {_esc(name)}</h1>"
        f"<p class=note>{_esc(plan['summary'].get('weights'))}; calibration "
        f"{_esc(json.dumps(plan['summary'].get('calibration'), sort_keys=True))}</p>"
        f"{body}<script>{CHECK_JS}</script></body></html>\n"
    )
