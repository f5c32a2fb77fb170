"""Inline SVG charts rendered on the server (the page needs no JavaScript library and works offline):
relevancy per cycle (baseline vs fine-tuned bars, success threshold line) and the LoRA training loss per cycle.
Each bar's value is printed on it and carried in ``data-*`` attributes."""

from __future__ import annotations

import math
from html import escape
from typing import Mapping, Sequence

BASE, FT = "#8c9bb0", "#2f7ed8"
LINE_COLOURS = ("#2f7ed8", "#e8743b", "#19a979", "#ed4a7b", "#945ecf", "#13a4b4")


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def relevancy_chart(cycles: Sequence[Mapping], threshold: float, width: int = 520, height: int = 260) -> str:
    """Grouped bars: mean answer relevancy (unparseable judge replies as 0) of baseline and fine-tuned per cycle."""
    left, right, top, bottom = 44, 10, 44, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    ymax = 1.0

    def y(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), ymax) / ymax)

    parts = [f'<svg class="chart relevancy-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="answer relevancy per cycle, baseline vs fine-tuned">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="tick">{tick:.2f}</text>')
    n = max(1, len(cycles))
    group = plot_w / n
    bar = min(60.0, group * 0.34)
    for i, c in enumerate(cycles):
        cx = left + group * (i + 0.5)
        for j, (series, colour) in enumerate((("baseline", BASE), ("finetuned", FT))):
            value = c[series].get("mean_unparseable_as_zero")
            v = value or 0.0
            x = cx - bar - 2 if j == 0 else cx + 2
            parts.append(f'<rect class="bar bar-{series}" x="{x:.1f}" y="{y(v):.1f}" width="{bar:.1f}" '
                         f'height="{top + plot_h - y(v):.1f}" fill="{colour}" data-cycle="{c["cycle"]}" '
                         f'data-series="{series}" data-value="{fmt(value, 6)}"><title>cycle {c["cycle"]} {series}: '
                         f'{fmt(value)}</title></rect>')
            parts.append(f'<text class="bar-value" x="{x + bar / 2:.1f}" y="{y(v) - 4:.1f}" text-anchor="middle" '
                         f'data-cycle="{c["cycle"]}" data-series="{series}">{fmt(value)}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 16}" text-anchor="middle" class="tick">cycle '
                     f'{c["cycle"]}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                 f'class="threshold"/>')
    parts.append(f'<rect x="{left}" y="6" width="10" height="10" fill="{BASE}"/><text x="{left + 14}" y="15" '
                 f'class="legend">baseline</text><rect x="{left + 80}" y="6" width="10" height="10" fill="{FT}"/>'
                 f'<text x="{left + 94}" y="15" class="legend">fine-tuned</text><line x1="{left + 170}" '
                 f'x2="{left + 190}" y1="11" y2="11" class="threshold"/><text x="{left + 195}" y="15" '
                 f'class="legend">success threshold {threshold:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def loss_chart(cycles: Sequence[Mapping], width: int = 520, height: int = 260) -> str:
    """One line per cycle: training loss (answer tokens) per optimizer step."""
    left, right, top, bottom = 50, 10, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    series = [(c["cycle"], [float(x) for x in c.get("train_losses") or []]) for c in cycles]
    values = [v for _, losses in series for v in losses]
    if not values:
        return '<p class="muted">no training losses recorded</p>'
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    steps = max(len(losses) for _, losses in series)
    digits = max(2, 1 - math.floor(math.log10((hi - lo) / 4)))  # tick labels that differ

    def x(i: int) -> float:
        return left + (plot_w * i / (steps - 1) if steps > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg class="chart loss-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="LoRA training loss per step">']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">{v:.{digits}f}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" class="tick">optimizer '
                 f'step (1..{steps})</text>')
    for k, (cycle, losses) in enumerate(series):
        colour = LINE_COLOURS[k % len(LINE_COLOURS)]
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(losses))
        parts.append(f'<polyline class="loss-line" points="{pts}" fill="none" stroke="{colour}" stroke-width="2" '
                     f'data-cycle="{cycle}" data-losses="{escape(",".join(f"{v:.6f}" for v in losses))}"/>')
        parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"><title>cycle {cycle} step {i + 1}: '
                  f'{v:.3f}</title></circle>' for i, v in enumerate(losses)]
        parts.append(f'<rect x="{left + 90 * k}" y="6" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{left + 90 * k + 14}" y="15" class="legend">cycle {cycle}</text>')
    parts.append("</svg>")
    return "".join(parts)
