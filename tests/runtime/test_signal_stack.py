"""OpenVINO leaves no freed alternate signal stack behind: two compiled models freed in the
order they were made, then a signal that a Python handler takes (here SIGCHLD, as a
DataLoader's handler takes it), killed the process with SIGSEGV before
`onestage.runtime.signal_stack`; the process now lives on."""

from __future__ import annotations

import subprocess
import sys

from onestage.runtime.signal_stack import current_signal_stack, kept_signal_stack

SCRIPT = """
import gc, signal, subprocess
from onestage.runtime.signal_stack import current_signal_stack
from onestage.engine.predictor import Detector

before = current_signal_stack()
first = Detector.load("animals", "cpu", backend="openvino")
second = Detector.load("animals", "cpu", backend="openvino")
del first
gc.collect()
del second
gc.collect()
assert current_signal_stack() == before, (current_signal_stack(), before)
signal.signal(signal.SIGCHLD, lambda *_: None)
subprocess.run(["true"], check=True)
print("alive")
"""


def test_two_openvino_models_freed_in_order_leave_the_process_alive() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "alive"


def test_the_stack_is_put_back_after_the_block() -> None:
    import ctypes

    before = current_signal_stack()
    memory = ctypes.create_string_buffer(64 * 1024)
    stack = (ctypes.c_void_p * 3)()  # stack_t: ss_sp, ss_flags (padded), ss_size
    stack[0], stack[1], stack[2] = ctypes.addressof(memory), 0, len(memory)
    with kept_signal_stack():
        ctypes.CDLL(None).sigaltstack(ctypes.byref(stack), None)
        assert current_signal_stack()[0] == ctypes.addressof(memory)
    assert current_signal_stack() == before
