"""Keep native libraries' log noise off our stdout and stderr.

TensorFlow 2.21 writes "WARNING: All log messages before absl::InitializeLog()",
CUDA probing and oneDNN lines straight to file descriptor 2 from C++, even with
TF_CPP_MIN_LOG_LEVEL=3 (measured here). Only redirecting the file descriptors
themselves silences it. What was captured is kept for ``--debug``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: Everything native code printed while silenced, for --debug.
captured: list[str] = []


@contextmanager
def native_output_silenced() -> Iterator[None]:
    """Redirect fds 1 and 2 to a temporary file for the duration."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))
