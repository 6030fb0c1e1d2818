"""Identify a whole archive: input expansion, a resumable JSONL output, a process pool.

The CLI's ``pillsnap identify ... --jsonl OUT --workers N`` is :func:`run_jsonl`; the
pieces are public for callers who drive their own loop.
"""

from .inputs import IMAGE_EXTENSIONS, InputItem, expand_inputs
from .jsonl import JsonlSink
from .pool import BatchWorkerError, IdentifyOptions, Outcome, identify_stream
from .runner import BatchSummary, run_jsonl

__all__ = [
    "IMAGE_EXTENSIONS",
    "BatchSummary",
    "BatchWorkerError",
    "IdentifyOptions",
    "InputItem",
    "JsonlSink",
    "Outcome",
    "expand_inputs",
    "identify_stream",
    "run_jsonl",
]
