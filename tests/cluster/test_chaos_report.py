"""docs/reliability.md's cluster section, as tools.chaos_cluster rewrites it: this run's table replaces the
old one, and what people wrote by hand (notes under the old table, other sections) stays."""

from __future__ import annotations

from tools.chaos_cluster import REPORT_HEADING, dead_hosts_presence, render_report

EARLIER = f"""# Reliability

Single-server intro.

## Hostile client

Hand-written hostile notes.

{REPORT_HEADING}

Old introduction at 56 req/s.

| fault | requests |
|---|---|
| SIGKILL NATS member C | 1680 |

Measured while other sessions ran tests; the 1.9 s is one member's reconnect.
Second line of notes.

## Later section

Kept too.
"""


def test_a_new_run_replaces_the_table_and_keeps_the_notes_and_other_sections() -> None:
    text = render_report([], 40.0, 30.0, EARLIER)
    assert text.startswith("# Reliability\n\nSingle-server intro.\n\n## Hostile client\n\nHand-written hostile notes.")
    assert text.count(REPORT_HEADING) == 1
    assert "Old introduction" not in text and "| SIGKILL NATS member C | 1680 |" not in text
    assert "load of 40 req/s" in text
    ours = text.split(REPORT_HEADING, 1)[1]
    table_end = ours.index("|---|---|---|---|---|---|---|---|---|---|---|") + 1
    assert ours.index("Measured while other sessions ran tests") > table_end
    assert "Second line of notes.\n\n## Later section\n\nKept too.\n" in ours


def test_a_file_without_the_section_gets_it_at_the_end() -> None:
    text = render_report([], 40.0, 30.0, "# Reliability\n\nSomething.\n")
    assert text.startswith("# Reliability\n\nSomething.\n\n" + REPORT_HEADING)
    assert text.endswith("|---|---|---|---|---|---|---|---|---|---|---|\n")


def test_only_a_dead_hosts_presence_entries_may_go() -> None:
    """The loss check forgives what the stale-claims sweep removes on purpose, and nothing else."""
    live = {"NLIVE"}
    assert dead_hosts_presence("lc.default.running.MACTOR.NDEAD", live)
    assert not dead_hosts_presence("lc.default.running.MACTOR.NLIVE", live)
    assert not dead_hosts_presence("lc.default.claims.MACTOR", live)
    assert not dead_hosts_presence("lc.default.linkdefs.abc", live)
    assert not dead_hosts_presence("apps/echo", live)
