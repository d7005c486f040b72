"""harmonize: compare dosimetry workflows on the same patients."""

__version__ = "0.1.0"
