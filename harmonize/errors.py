"""The root of harmonize's error types.

Every error harmonize raises on purpose subclasses :class:`HarmonizeError` (and, for
backward compatibility, the built-in type it subclassed before, usually ``ValueError``).
Callers, the CLI and the conformance suite tell "ours, with a message naming the file, field,
VOI or time point" from a crash by ``isinstance(exc, HarmonizeError)``.
"""

from __future__ import annotations

__all__ = ["HarmonizeError"]


class HarmonizeError(Exception):
    """Base class of every error type harmonize defines."""
