"""Start-up stays light (issue #17): what `import harmonize`, `harmonize --help` and
`harmonize workflows` load.

Import times are measured in ``benchmarks/bench_startup.py``; here only which heavy packages
get imported, which does not depend on the machine's load.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def test_workflows_listing_loads_no_heavy_package():
    # `harmonize workflows` imports every adapter (and what they import): pandas, xarray and
    # scipy are bound lazily (harmonize._lazy) and the table is printed without pandas.
    code = "from harmonize.cli import main\nmain(['workflows'])"
    probe = PROBE.format(code="exec(" + repr(code) + ")", heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "[]"
    assert lines[0].split() == [
        "name", "center", "version", "voxel_level", "min_time_points", "references"
    ]  # fmt: skip
    assert len(lines) >= 4  # header + the three built-in adapters


def test_workflows_listing_is_pandas_rendering():
    import numpy as np
    import pandas as pd

    from harmonize.registry import format_rows, workflows_rows

    columns = ["name", "center", "version", "voxel_level", "min_time_points", "references"]
    installed = workflows_rows()
    assert format_rows(installed, columns) == pd.DataFrame(installed)[columns].to_string(
        index=False
    )
    # the cases pandas treats differently: numeric headers, a value wider than its header,
    # negative and numpy integers, mixed bool/int (object), empty and escaped strings
    cases = [
        [{"b": True, "i": 3, "s": "x"}, {"b": False, "i": -12345, "s": "yy"}],
        [{"longheader": True, "i": 123456789, "s": ""}],
        [{"i": np.int64(3), "b": np.bool_(True)}],
        [{"i": 3, "b": True}, {"i": True, "b": 2}],
        [{"s": "a\nb\tc\r", "t": "é"}, {"s": "", "t": "bb"}],
    ]
    for rows in cases:
        assert format_rows(rows, list(rows[0])) == pd.DataFrame(rows).to_string(index=False)
    with pytest.raises(TypeError, match="column 'x'"):
        format_rows([{"x": 1.5}], ["x"])


def test_lazy_modules_import_on_first_use():
    from harmonize._lazy import lazy_module

    code = (
        "import sys\nfrom harmonize._lazy import lazy_module\nm = lazy_module('wave')\n"
        "print('wave' in sys.modules)\nm.Error\nprint('wave' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    assert lazy_module("json").dumps([1]) == "[1]"


def test_boundary_structure_is_scipy_six_connectivity():
    import numpy as np
    from scipy import ndimage

    from harmonize.uncertainty import boundary

    assert np.array_equal(boundary._STRUCTURE, ndimage.generate_binary_structure(3, 1))
    assert boundary._STRUCTURE.dtype == bool
