"""Keep native libraries' log noise off our stdout and stderr.

TensorFlow 2.21 writes "WARNING: All log messages before absl::InitializeLog()",
CUDA probing and oneDNN lines straight to file descriptor 2 from C++, even with
TF_CPP_MIN_LOG_LEVEL=3 (measured here). Only redirecting the file descriptors
themselves silences it. What was captured is kept for ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Everything native code printed while silenced, for --debug.
captured: list[str] = []


@contextmanager
def native_output_silenced() -> Iterator[None]:
    """Redirect fds 1 and 2 to a temporary file for the duration."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with tempfile.TemporaryFile() as sink:
        # A Ctrl-C landing between these dup2 calls would leave stderr in the
        # sink, and its one-line message lost: SIGINT waits until they are done.
        with sigint_held():
            saved = (os.dup(1), os.dup(2))
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            with sigint_held():
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


@contextmanager
def sigint_ends(code: int = 130) -> Iterator[None]:
    """Ctrl-C ends the process at once, with ``code`` (130: interrupted), for a block that has
    written nothing yet and that a KeyboardInterrupt must not cut in half: the framework's import.

    Holding Ctrl-C back there (sigint_held) answered it only after the import, up to 7.5 s later;
    ending the process loses nothing, since nothing has been written, and leaves no half-imported
    module behind, since the process is gone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    # stderr as it is now: the import inside may point fd 2 elsewhere (native_output_silenced).
    stderr = os.dup(2)

    def end(signum: int, frame: object) -> None:
        os.write(stderr, b"mha-explain: interrupted\n")
        os._exit(code)

    previous = signal.signal(signal.SIGINT, end)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        os.close(stderr)


@contextmanager
def sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back until the block ends, then deliver it as usual.

    For code a KeyboardInterrupt must not cut in half: file-descriptor
    juggling, and TensorFlow's import and Keras's lazy imports, which Ctrl-C
    can crash (measured, TF 2.21: a segfault, "initialization failed" on the
    next import, half-imported modules). The Python-level handler is swapped,
    not the signal mask: the OS may hand SIGINT to any thread (OpenBLAS's,
    TensorFlow's), but Python runs handlers in the main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)  # the outer holder records it; Python's default raises
