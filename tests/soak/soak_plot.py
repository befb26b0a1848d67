"""The soak's plot as a small SVG written by hand (no plotting library needed): the agent's RSS,
open fds and threads over time, one panel each, with the faults as vertical lines."""

from __future__ import annotations

from xml.sax.saxutils import escape

COLORS = {"agent_kill": "#d62728", "power_cut": "#8c564b", "central_outage": "#1f77b4",
          "central_kill": "#17becf", "sighup": "#2ca02c", "renormalize": "#9467bd",
          "disk_budget": "#ff7f0e", "baseline": "#000000", "end": "#000000"}
WIDTH, PANEL, LEFT, RIGHT, TOP, GAP = 900, 150, 70, 20, 50, 36


def write_svg(path: str, samples: list[tuple], events: list[dict], title: str) -> None:
    panels = [("RSS (MiB)", 2, 1 / 1024), ("open fds", 3, 1), ("threads", 4, 1)]
    height = TOP + len(panels) * (PANEL + GAP) + 50
    t_max = max([s[0] for s in samples] + [e["ended"] for e in events] + [1])
    x = lambda t: LEFT + (WIDTH - LEFT - RIGHT) * t / t_max
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="14" font-size="14">{escape(title)}</text>']
    legend_x = LEFT
    for kind, color in COLORS.items():
        if kind == "end":
            continue
        out.append(f'<line x1="{legend_x}" y1="27" x2="{legend_x + 12}" y2="27" '
                   f'stroke="{color}" stroke-width="2"/>'
                   f'<text x="{legend_x + 15}" y="31">{kind}</text>')
        legend_x += 24 + 6.2 * len(kind)
    for index, (label, column, scale) in enumerate(panels):
        top = TOP + index * (PANEL + GAP)
        values = [s[column] * scale for s in samples] or [0]
        low, high = min(values), max(values)
        if high - low < 1e-9:
            low, high = low - 1, high + 1
        pad = (high - low) * 0.1
        low, high = low - pad, high + pad
        y = lambda v: top + PANEL - PANEL * (v - low) / (high - low)
        out.append(f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" '
                   f'height="{PANEL}" fill="none" stroke="#999"/>')
        out.append(f'<text x="{LEFT}" y="{top - 4}">{label}</text>')
        for v in (low + pad, high - pad):
            out.append(f'<text x="{LEFT - 5}" y="{y(v) + 4:.1f}" text-anchor="end">'
                       f'{v:.1f}</text>')
        for event in events:
            color = COLORS.get(event["kind"], "#777")
            out.append(f'<line x1="{x(event["began"]):.1f}" y1="{top}" '
                       f'x2="{x(event["began"]):.1f}" y2="{top + PANEL}" stroke="{color}" '
                       f'stroke-opacity="0.6"/>')
        # One polyline per life of the agent (a restart is a new process).
        lives: dict[int, list[str]] = {}
        for s in samples:
            lives.setdefault(s[1], []).append(f"{x(s[0]):.1f},{y(s[column] * scale):.1f}")
        for points in lives.values():
            out.append(f'<polyline fill="none" stroke="#222" stroke-width="1.2" '
                       f'points="{" ".join(points)}"/>')
    bottom = TOP + len(panels) * (PANEL + GAP) - GAP + 15
    for minute in range(0, int(t_max / 60) + 1, max(1, int(t_max / 60 / 12))):
        out.append(f'<text x="{x(minute * 60):.1f}" y="{bottom}" text-anchor="middle">'
                   f'{minute}</text>')
    out.append(f'<text x="{WIDTH / 2}" y="{bottom + 18}" text-anchor="middle">minutes</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
