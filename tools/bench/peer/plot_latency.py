"""`python plot_latency.py OUT.png < data.json`: latency percentiles against offered rate, one line per system.

Runs in the peer venv (matplotlib is installed there, not in Waft's .venv). Input JSON:
{"title": str, "bound_ms": float?, "series": [{"name": str, "points": [{"rate": float, "p50_ms": float,
"p95_ms": float, "p99_ms": float, "errors": int?}]}]}. Points with errors are drawn hollow.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import ticker

QUANTILES = (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))
COLOURS = ("#1f6feb", "#d9480f", "#2f9e44", "#7048e8")


def main(out: str) -> None:
    data = json.load(sys.stdin)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), sharey=True, constrained_layout=True)
    for ax, (key, label) in zip(axes, QUANTILES, strict=True):
        for colour, series in zip(COLOURS, data["series"], strict=False):
            points = sorted((p for p in series["points"] if p.get(key) is not None), key=lambda p: p["rate"])
            if not points:
                continue
            rates = [p["rate"] for p in points]
            values = [max(p[key], 0.1) for p in points]
            ax.plot(rates, values, "-", color=colour, label=series["name"], linewidth=1.8)
            for p, v in zip(points, values, strict=True):
                hollow = bool(p.get("errors"))
                ax.plot([p["rate"]], [v], "o", color=colour, markerfacecolor="white" if hollow else colour)
        if data.get("bound_ms"):
            ax.axhline(data["bound_ms"], color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"{data['bound_ms']:g} ms", xy=(1, data["bound_ms"]), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", color="grey", fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(label)
        ax.set_xlabel("offered rate (requests/s, open loop)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.suptitle(data.get("title", "latency against offered rate"))
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
