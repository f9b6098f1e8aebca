"""The scale benchmark's memory sampler counts a process's whole tree (Linux /proc)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from mmdetect.scale.bench import tree_rss

GRANDCHILD = "b = b'x' * (96 << 20); import time; time.sleep(60)"  # 96 MiB, every page written
CHILD = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {GRANDCHILD!r}])"


def test_tree_rss_counts_a_grandchild_and_not_unrelated_processes():
    proc = subprocess.Popen([sys.executable, "-c", CHILD])
    try:
        deadline, rss = time.monotonic() + 20, 0
        while time.monotonic() < deadline:
            rss = tree_rss(proc.pid)
            if rss > 96 << 20:
                break
            time.sleep(0.1)
        # the grandchild's 96 MiB are counted through the child; the child alone holds far less
        assert rss > 96 << 20
        with open(f"/proc/{proc.pid}/statm") as fh:
            child_only = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        assert child_only < 64 << 20
    finally:
        subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
        proc.kill()
        proc.wait()
    assert tree_rss(proc.pid) == 0  # gone: nothing is read from a reused or missing pid
