"""Reference data shipped with harmonize (each folder has a README with its provenance)."""
