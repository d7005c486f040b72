"""The harmonize results schema: a versioned JSON document and its prose spec (SPEC.md).

Installed as ``harmonize.data_schema``; read it with :mod:`importlib.resources`.
"""
