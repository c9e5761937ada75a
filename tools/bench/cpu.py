"""CPU time spent per request by a whole process tree, read from /proc.

Why: on a machine with few cores, the highest rate a server sustains is about cores / (CPU seconds per
request). Latency figures on a shared machine swing with the neighbours; CPU per request barely does,
and split by process it says where a lattice spends its time (host and actors, each provider, NATS).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessCpu:
    pid: int
    parent: int
    label: str
    seconds: float  # user + system, this process's own threads


def _read(pid_dir: Path) -> ProcessCpu | None:
    try:
        stat = (pid_dir / "stat").read_text()
        argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:  # gone between listing and reading
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return ProcessCpu(int(pid_dir.name), int(fields[1]), label_for([a.decode(errors="replace") for a in argv if a]),
                      (int(fields[11]) + int(fields[12])) / _TICK)


def label_for(argv: list[str]) -> str:
    """A short name a reader recognises: the module run with -m, the waft subcommand, or the program."""
    if not argv:
        return "?"
    program = Path(argv[0]).name
    if program.startswith("python"):
        if "-m" in argv[1:-1]:
            return argv[argv.index("-m") + 1]
        if len(argv) > 1 and not argv[1].startswith("-"):
            return label_for(argv[1:])  # a script: name it, not the interpreter
    if program == "waft" and len(argv) > 1:
        return f"waft {argv[1]}"
    return program


def process_tree(root: int) -> dict[int, ProcessCpu]:
    """`root` and every live descendant."""
    table = {p.pid: p for d in Path("/proc").iterdir() if d.name.isdigit() and (p := _read(d)) is not None}
    tree = {root} if root in table else set()
    grew = True
    while grew:
        grew = False
        for p in table.values():
            if p.pid not in tree and p.parent in tree:
                tree.add(p.pid)
                grew = True
    return {pid: table[pid] for pid in tree}


class TreeMeter:
    """CPU seconds a process tree spends between `start()` and `stop()`, by label (processes that
    started in between count from zero; ones that ended in between are lost, so keep the tree steady)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self._before: dict[int, ProcessCpu] = {}

    def start(self) -> None:
        self._before = process_tree(self.root)

    def stop(self) -> Counter[str]:
        spent: Counter[str] = Counter()
        for pid, now in process_tree(self.root).items():
            before = self._before.get(pid)
            spent[now.label] += now.seconds - (before.seconds if before else 0.0)
        return spent
