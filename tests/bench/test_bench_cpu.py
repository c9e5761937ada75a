"""tools.bench.cpu: the CPU a process tree spends, by process, as the e2e bench reports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools.bench.cpu import TreeMeter, label_for


@pytest.mark.parametrize("argv, label", [
    (["/x/.venv/bin/python", "/x/.venv/bin/waft", "up", "--app", "a.yaml"], "waft up"),
    (["/x/.venv/bin/python", "-m", "waft_mlinference"], "waft_mlinference"),
    (["/x/.venv/bin/nats-server", "-c", "nats.conf"], "nats-server"),
    (["python3", "-c", "pass"], "python3"),
    ([], "?"),
])
def test_labels_name_what_a_reader_recognises(argv, label):
    assert label_for(argv) == label


def test_a_grandchild_is_measured_from_start_to_stop():
    code = ("import sys, time\n"
            "sys.stdin.readline(); begun = time.process_time()\n"
            "while time.process_time() - begun < 0.4: pass\n"
            "sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)\n")
    child = subprocess.Popen(["sh", "-c", f'{sys.executable} -c "$0"; true', code],  # sh stays: a tree of two
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        meter = TreeMeter(child.pid)
        meter.start()
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        spent = meter.stop()
    finally:
        child.kill()
        child.wait()
    burner = label_for([sys.executable, "-c", "x"])
    assert set(spent) == {"sh", burner}
    assert 0.35 <= spent[burner] <= 0.6  # the 0.4 CPU seconds it burned between start() and stop()
    assert spent["sh"] < 0.05
