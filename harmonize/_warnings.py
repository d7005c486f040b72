"""Warning classes of harmonize (our own warnings are errors in the test suite)."""

__all__ = ["HarmonizeWarning"]


class HarmonizeWarning(UserWarning):
    """Base class of every warning harmonize emits."""
