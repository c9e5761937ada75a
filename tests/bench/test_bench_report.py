"""docs/benchmarks.md: re-running one section keeps the others as they were."""

from __future__ import annotations

from tools.bench.__main__ import earlier_sections, render


def _row(name: str, ours: float) -> dict[str, object]:
    return {"name": name, "ours": ours, "baseline": 2.0, "ratio": ours / 2.0, "unit": "ms", "goal": ""}


def test_a_partial_run_keeps_the_other_sections_in_order():
    first = render({"lattice": [_row("hop", 3.0)], "preprocess": [_row("jpeg", 5.0)]}, [])
    kept = {n: t for n, t in earlier_sections(first).items() if n != "preprocess"}
    second = render({"preprocess": [_row("jpeg", 4.0)]}, ["bindle: no benchmark in this build"], kept)
    assert second.index("## lattice") < second.index("## preprocess") < second.index("## Notes")
    assert "| hop | 3 | 2 | **1.5x** | ms |  |" in second
    assert "| jpeg | 4 | 2 | **2x** | ms |  |" in second and "| jpeg | 5 |" not in second
    assert second.count("_measured ") == 2
    assert set(earlier_sections(second)) == {"lattice", "preprocess"}  # Notes are not a section
