"""Start-up stays light (issue #17): what `import harmonize` and `harmonize --help` load.

Import times are measured in ``benchmarks/bench_startup.py``; here only which heavy packages
get imported, which does not depend on the machine's load.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("radioactivedecay", "sympy", "pandas", "xarray", "pyarrow", "scipy", "matplotlib",
         "dask", "SimpleITK", "highdicom")  # fmt: skip

PROBE = (
    "import sys; {code}; print(sorted(set({heavy!r}) & {{m.split('.')[0] for m in sys.modules}}))"
)


def _heavy_after(code: str) -> str:
    probe = PROBE.format(code=code, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_import_and_first_lookup_load_no_heavy_package():
    assert _heavy_after("import harmonize; harmonize.get_nuclide('Lu-177')") == "[]"


def test_help_loads_no_heavy_package():
    code = (
        "from harmonize.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    probe = PROBE.format(code="exec(" + repr(code) + ")", heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_public_names_resolve_lazily():
    import harmonize

    for name in harmonize.__all__:
        assert getattr(harmonize, name) is not None, name
    assert harmonize.open_study.__module__ == "harmonize.bundle"
