"""Workflow adapters shipped with harmonize (registered through the ``harmonize.workflows`` entry-point group)."""
