"""The report charts as SVG drawn on the server: no script, no external reference, no font
or stylesheet to fetch, so they show on a closed network and inside an <img>.

Both take the JSON of `reports.response_times` and return an SVG document sized for a
dashboard card (it scales by its viewBox). Every text goes through ElementTree, which
escapes it, after the characters XML cannot hold at all are dropped. A deviating
provider is marked in words as well as in colour. Presentation attributes only: the
app's Content-Security-Policy forbids inline style.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from dispatch.reports import BUCKETS, NO_CHECK_IN, TARGET_SHARE, percent

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH = 520
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
EMPTY = "no alarms in the period"
DEVIATES = "DEVIATES"
RED = "#b3001b"
INK = "#222222"
MUTED = "#666666"
GRID = "#dddddd"
# Green to red by minutes, then dark grey for "never checked in" (ColorBrewer RdYlGn).
BUCKET_COLOURS = ("#1a9850", "#66bd63", "#a6d96a", "#fdae61", "#f46d43", "#d73027",
                  "#4d4d4d")
# A series per provider: colour, dash and marker differ, so the lines part without colour.
SERIES_COLOURS = ("#1f77b4", "#d95f02", "#7570b3", "#1b9e77", "#e7298a", "#66a61e",
                  "#a6761d", "#444444")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object) -> str:
    """A string XML can hold (ElementTree escapes &, < and quotes; it keeps control
    characters, which no parser would take back)."""
    return _NOT_XML.sub("", str(value))


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    node = ET.SubElement(parent, tag, {k.rstrip("_").replace("_", "-"): _text(v)
                                       for k, v in attrs.items() if v is not None})
    if text is not None:
        node.text = _text(text)
    return node


def _document(height: int, title: str, desc: str) -> ET.Element:
    svg = ET.Element("svg", {
        "xmlns": SVG_NS, "version": "1.1", "width": str(WIDTH), "height": str(height),
        "viewBox": f"0 0 {WIDTH} {height}", "role": "img",
        "aria-labelledby": "chart-title chart-desc", "font-family": FONT, "font-size": "12",
    })
    _el(svg, "title", title, id="chart-title")
    _el(svg, "desc", desc, id="chart-desc")
    _el(svg, "rect", x=0, y=0, width=WIDTH, height=height, fill="#ffffff")
    _el(svg, "text", title, x=12, y=20, font_size=14, font_weight="bold", fill=INK)
    return svg


def _serialise(svg: ET.Element) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode")


def _empty(svg: ET.Element, height: int) -> str:
    _el(svg, "text", EMPTY, x=WIDTH / 2, y=height / 2 + 10, text_anchor="middle",
        font_size=14, fill=MUTED)
    return _serialise(svg)


def _percent(value: float | None) -> str:
    # Floored like the deviations say it: 89.8 % must not read as the 90 % it misses.
    return "-" if value is None else percent(value)


def _period(report: dict[str, Any]) -> str:
    return f"{report['from']} to {report['to']}"


def _name(provider: dict[str, Any]) -> str:
    return provider["provider"] or "(no provider)"


def _short(name: str, room: int = 20) -> str:
    """A name cut to fit its column (the full one is in the element's title)."""
    return name if len(name) <= room else f"{name[:room - 1]}…"


# -- the distribution of arrival times -------------------------------------------------

ROW_H = 34
BAR_X = 160
BAR_W = 210
TOP = 36


def response_times_svg(report: dict[str, Any]) -> str:
    """Per provider a bar of the alarms that needed a visit, split by arrival time
    (0-10, 10-20, 20-30, 30-45, 45-60, over 60 minutes, never checked in), as shares;
    a deviating provider is outlined in red and labelled DEVIATES with its reasons."""
    providers = report["providers"]
    names = [label for label, _ in BUCKETS] + [NO_CHECK_IN]
    height = TOP + ROW_H * max(len(providers), 1) + 56
    title = f"Arrival times per provider, {_period(report)}"
    svg = _document(height, title, _arrival_desc(providers))
    if not providers:
        return _empty(svg, height)
    for n, provider in enumerate(providers):
        _arrival_row(svg, provider, TOP + n * ROW_H)
    legend_y = TOP + ROW_H * len(providers) + 14
    _el(svg, "text", "minutes:", x=12, y=legend_y + 9, font_size=11, fill=INK)
    x = 64.0
    for name, colour in zip(names, BUCKET_COLOURS, strict=True):
        _el(svg, "rect", x=x, y=legend_y, width=10, height=10, fill=colour)
        _el(svg, "text", name, x=x + 14, y=legend_y + 9, font_size=11, fill=INK)
        x += 14 + 6.2 * len(name) + 12
    _el(svg, "text", "Share of the alarms that needed a visit; n = how many. 30 minutes is "
        "the target.", x=12, y=legend_y + 30, font_size=11, fill=MUTED)
    return _serialise(svg)


def _arrival_row(svg: ET.Element, provider: dict[str, Any], y: float) -> None:
    deviates = provider["deviates"]
    row = _el(svg, "g", class_="provider deviates" if deviates else "provider")
    _el(row, "title", f"{_name(provider)}: " + ("; ".join(provider["deviations"])
                                               if deviates else "no deviation"))
    _el(row, "text", _short(_name(provider)), x=12, y=y + 14, font_size=11, fill=INK,
        font_weight="bold" if deviates else None)
    if deviates:
        _el(row, "text", f"⚠ {DEVIATES}", x=12, y=y + 27, font_size=10, font_weight="bold",
            fill=RED)
    buckets = provider["arrival_buckets"]
    total = sum(b["alarms"] for b in buckets)
    x = float(BAR_X)
    for bucket, colour in zip(buckets, BUCKET_COLOURS, strict=True):
        if not total or not bucket["alarms"]:
            continue
        width = BAR_W * bucket["alarms"] / total
        part = _el(row, "rect", x=f"{x:.2f}", y=y + 4, width=f"{width:.2f}", height=20,
                   fill=colour)
        _el(part, "title", f"{_name(provider)}, {bucket['bucket']}: {bucket['alarms']} of "
                           f"{total}")
        x += width
    _el(row, "rect", x=BAR_X, y=y + 4, width=BAR_W, height=20, fill="none",
        stroke=RED if deviates else GRID, stroke_width=3 if deviates else 1)
    if not total:
        _el(row, "text", "no visit needed", x=BAR_X + BAR_W / 2, y=y + 18,
            text_anchor="middle", font_size=11, fill=MUTED)
    _el(row, "text", f"n={total} · {_percent(provider['within_30_min_share'])} ≤30 min",
        x=BAR_X + BAR_W + 8, y=y + 18, font_size=11, fill=RED if deviates else INK)


def _arrival_desc(providers: Sequence[dict[str, Any]]) -> str:
    if not providers:
        return EMPTY
    parts = []
    for p in providers:
        counts = ", ".join(f"{b['bucket']}: {b['alarms']}" for b in p["arrival_buckets"])
        flag = f" DEVIATES ({'; '.join(p['deviations'])})" if p["deviates"] else ""
        parts.append(f"{_name(p)}: {counts} (minutes to check-in){flag}.")
    return " ".join(parts)


# -- the weekly share within 30 minutes ------------------------------------------------

PLOT_X = 48
PLOT_W = 280
PLOT_Y = 40
PLOT_H = 170


def within_30_svg(report: dict[str, Any]) -> str:
    """Per provider and ISO week the share of the alarms that needed a visit that were
    checked in within 30 minutes, as lines over the period's weeks, with the 90 % target
    as a dashed line; a week without such alarms leaves a gap."""
    providers = [p["provider"] for p in report["providers"]]
    weeks: list[str] = report["weeks"]
    deviating = {p["provider"] for p in report["providers"] if p["deviates"]}
    height = max(PLOT_Y + PLOT_H + 44, PLOT_Y + 8 + 30 * len(providers))
    title = f"Within 30 minutes per week, {_period(report)}"
    svg = _document(height, title, _weekly_desc(report, deviating))
    if not providers:
        return _empty(svg, height)
    _axes(svg, weeks)
    points = {(w["provider"], w["week"]): w for w in report["weekly"]}
    for n, provider in enumerate(providers):
        _series(svg, n, provider, weeks, points, provider in deviating)
    _target(svg)
    return _serialise(svg)


def _x(index: int, count: int) -> float:
    return PLOT_X + (PLOT_W * (index + 0.5) / count)


def _y(value: float) -> float:
    return PLOT_Y + PLOT_H * (1 - value)


def _axes(svg: ET.Element, weeks: Sequence[str]) -> None:
    axes = _el(svg, "g", class_="axes")
    for tick in (0, 0.25, 0.5, 0.75, 1):
        _el(axes, "line", x1=PLOT_X, y1=_y(tick), x2=PLOT_X + PLOT_W, y2=_y(tick),
            stroke=GRID, stroke_width=1)
        _el(axes, "text", f"{tick * 100:.0f} %", x=PLOT_X - 6, y=_y(tick) + 4,
            text_anchor="end", font_size=10, fill=MUTED)
    every = max(1, -(-len(weeks) // 8))  # at most 8 week labels
    for i, week in enumerate(weeks):
        if i % every == 0:
            _el(axes, "text", week.split("-")[1], x=_x(i, len(weeks)),
                y=PLOT_Y + PLOT_H + 16, text_anchor="middle", font_size=10, fill=MUTED)
    _el(axes, "text", "ISO week", x=PLOT_X + PLOT_W / 2, y=PLOT_Y + PLOT_H + 32,
        text_anchor="middle", font_size=10, fill=MUTED)


def _target(svg: ET.Element) -> None:
    """The 90 % line, drawn over the series, its label with a white halo."""
    target = _el(svg, "g", class_="target")
    _el(target, "line", x1=PLOT_X, y1=_y(TARGET_SHARE), x2=PLOT_X + PLOT_W,
        y2=_y(TARGET_SHARE), stroke=RED, stroke_width=1.5, stroke_dasharray="5 4")
    _el(target, "text", f"target {TARGET_SHARE * 100:.0f} %", x=PLOT_X + PLOT_W - 2,
        y=_y(TARGET_SHARE) - 4, text_anchor="end", font_size=10, fill=RED,
        stroke="#ffffff", stroke_width=3, paint_order="stroke")


def _series(svg: ET.Element, n: int, provider: str | None, weeks: Sequence[str],
            points: dict[tuple[str | None, str], dict[str, Any]], deviates: bool) -> None:
    colour, dash = SERIES_COLOURS[n % len(SERIES_COLOURS)], DASHES[n % len(DASHES)]
    marker = MARKERS[n % len(MARKERS)]
    name = provider or "(no provider)"
    series = _el(svg, "g", class_="series deviates" if deviates else "series")
    _el(series, "title", f"{name}{' (deviates)' if deviates else ''}")
    run: list[tuple[float, float]] = []
    for i, week in enumerate([*weeks, None]):  # None ends the last run
        point = points.get((provider, week)) if week else None
        value = point["within_30_min_share"] if point else None
        if value is None:
            if len(run) > 1:
                _el(series, "polyline", points=" ".join(f"{x:.1f},{y:.1f}" for x, y in run),
                    fill="none", stroke=colour, stroke_width=2,
                    stroke_dasharray=dash or None)
            run = []
            continue
        xy = (_x(i, len(weeks)), _y(value))
        run.append(xy)
        mark = _marker(series, marker, *xy, colour)
        _el(mark, "title", f"{name}, {week}: {_percent(value)} of "
                           f"{point['needing_visit'] if point else 0} within 30 min")
    legend_y = PLOT_Y + 8 + 30 * n
    _marker(series, marker, PLOT_X + PLOT_W + 22, legend_y, colour)
    _el(series, "line", x1=PLOT_X + PLOT_W + 12, y1=legend_y, x2=PLOT_X + PLOT_W + 32,
        y2=legend_y, stroke=colour, stroke_width=2, stroke_dasharray=dash or None)
    _el(series, "text", _short(name), x=PLOT_X + PLOT_W + 38, y=legend_y + 4, font_size=11,
        fill=INK, font_weight="bold" if deviates else None)
    if deviates:
        _el(series, "text", f"⚠ {DEVIATES}", x=PLOT_X + PLOT_W + 38, y=legend_y + 17,
            font_size=10, font_weight="bold", fill=RED)


def _marker(parent: ET.Element, shape: str, x: float, y: float, colour: str) -> ET.Element:
    if shape == "circle":
        return _el(parent, "circle", cx=f"{x:.1f}", cy=f"{y:.1f}", r=3.5, fill=colour)
    if shape == "square":
        return _el(parent, "rect", x=f"{x - 3.5:.1f}", y=f"{y - 3.5:.1f}", width=7, height=7,
                   fill=colour)
    corners = ((x, y - 4.5), (x + 4.5, y + 3.5), (x - 4.5, y + 3.5)) if shape == "triangle" \
        else ((x, y - 4.5), (x + 4.5, y), (x, y + 4.5), (x - 4.5, y))
    return _el(parent, "polygon", points=" ".join(f"{a:.1f},{b:.1f}" for a, b in corners),
               fill=colour)


def _weekly_desc(report: dict[str, Any], deviating: set[str | None]) -> str:
    if not report["providers"]:
        return EMPTY
    parts = [f"Target {TARGET_SHARE * 100:.0f} %."]
    for p in report["providers"]:
        weeks = [f"{w['week']}: {_percent(w['within_30_min_share'])}"
                 for w in report["weekly"] if w["provider"] == p["provider"]]
        flag = " DEVIATES." if p["provider"] in deviating else ""
        parts.append(f"{_name(p)}: {', '.join(weeks)}.{flag}")
    return " ".join(parts)
