"""Keeping a thread's alternate signal stack as it was across a call into OpenVINO.

OpenVINO's CPU plugin gives the thread that compiles a model an alternate signal stack of its
own, and puts back the one it found when that compiled model is freed. Two models freed in the
order they were made (A, B, free A, free B) leave the thread on A's stack, already unmapped; the
next signal whose handler runs on the alternate stack (every handler Python installs, SIGINT's
KeyboardInterrupt and a DataLoader's SIGCHLD included) then kills the process with SIGSEGV.
Wrapping each OpenVINO call that compiles in `kept_signal_stack` undoes the change as soon as it
is made, so the thread never runs on a stack that OpenVINO may free.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _StackT(ctypes.Structure):
    """`stack_t` of <signal.h> (Linux)."""

    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def current_signal_stack() -> tuple[int, int, int]:
    """This thread's alternate signal stack: (address, flags, size); (0, 0, 0) off Linux."""
    if _libc is None:
        return 0, 0, 0
    stack = _StackT()
    _libc.sigaltstack(None, ctypes.byref(stack))
    return stack.ss_sp or 0, stack.ss_flags, stack.ss_size


@contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block, then give this thread back the alternate signal stack it had before."""
    if _libc is None:
        yield
        return
    saved = _StackT()
    _libc.sigaltstack(None, ctypes.byref(saved))
    try:
        yield
    finally:
        if current_signal_stack() != (saved.ss_sp or 0, saved.ss_flags, saved.ss_size):
            saved.ss_flags &= ~1  # SS_ONSTACK is reported, never set
            _libc.sigaltstack(ctypes.byref(saved), None)
