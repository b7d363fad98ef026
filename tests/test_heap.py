"""contracts.heap: the collector settings every stage process applies before its loop."""
from __future__ import annotations

import json
import subprocess
import sys


def _in_fresh_interpreter(code: str) -> dict:
    # A process of its own: freezing the test runner's heap would outlive this test.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_start_up_heap_is_frozen_and_young_collections_are_rarer():
    seen = _in_fresh_interpreter(
        "import gc, json\n"
        "from contracts.heap import settle_after_start_up, YOUNG_THRESHOLD\n"
        "before = gc.get_freeze_count()\n"
        "settle_after_start_up()\n"
        "print(json.dumps({'before': before, 'after': gc.get_freeze_count(),\n"
        "                  'threshold': gc.get_threshold(), 'young': YOUNG_THRESHOLD}))\n")
    assert seen["before"] == 0
    # What start-up allocated (the imported modules, at least) is out of the collector's sight.
    assert seen["after"] > 1000
    assert seen["threshold"][0] == seen["young"] > 700


def test_cycles_made_after_settling_are_still_collected():
    seen = _in_fresh_interpreter(
        "import gc, json, weakref\n"
        "from contracts.heap import settle_after_start_up\n"
        "settle_after_start_up()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "probe = weakref.ref(a); del a, b\n"
        "gc.collect()\n"
        "print(json.dumps({'alive': probe() is not None}))\n")
    assert seen == {"alive": False}
