"""Generate the cached ICRP-107 nuclide table ``harmonize/data/nuclides_icrp107.json``.

The table holds, for the radionuclides of theranostics in :data:`TABLE_NUCLIDES`, exactly
what :func:`harmonize.nuclides.load_live` computes from ``radioactivedecay`` (half-lives,
ICRP-107 default dataset) and ``icrp107-database`` (emission spectra), with the versions of
both packages. Floats are written with Python's shortest round-trip repr, so reading the
table back gives the same binary values. Regenerate after upgrading either package::

    python -m harmonize._nuclide_table            # rewrite the table in the source tree
    python -m harmonize._nuclide_table --check    # exit 1 if the table is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harmonize._fs import write_bytes_atomic
from harmonize.nuclides import NUCLIDE_TABLE, load_live

__all__ = ["TABLE_NUCLIDES", "build_table", "main", "table_bytes"]

#: Radionuclides served from the table (therapy, imaging and their common partners).
TABLE_NUCLIDES = (
    "Lu-177", "Y-90", "I-131", "I-123", "I-124", "Ga-68", "In-111", "Tc-99m", "F-18",
    "Cu-64", "Cu-67", "Tb-161", "Tb-152", "Tb-149", "Sc-44", "Sc-47", "Ho-166", "Re-188",
    "Sm-153", "Sr-89", "Er-169", "Zr-89", "Ac-225", "Bi-213", "Pb-212", "Bi-212", "Ra-223",
    "At-211", "Th-227", "Lu-177m",
)  # fmt: skip


def build_table(names: Sequence[str] = TABLE_NUCLIDES) -> dict[str, Any]:
    """The table as a JSON-ready dict, computed from the installed packages."""
    nuclides: dict[str, Any] = {}
    for name in names:
        nuc = load_live(name)
        nuclides[nuc.name] = {
            "half_life_h": nuc.half_life_h,
            "electron_energy_mev": nuc.electron_energy_mev,
            "alpha_energy_mev": nuc.alpha_energy_mev,
            "photon_energy_mev": nuc.photon_energy_mev,
            "gamma_energy_mev": nuc.gamma_energy_mev,
            "photon_energies_mev": nuc.photon_energies_mev.tolist(),
            "photon_yields": nuc.photon_yields.tolist(),
        }
    return {
        "provenance": {
            "description": "ICRP Publication 107 decay data (Eckerman & Endo 2008)",
            "half_life_source": "radioactivedecay, default dataset icrp107_ame2020_nubase2020",
            "emission_source": "icrp107-database, get_icrp107_spectrum",
            "radioactivedecay": version("radioactivedecay"),
            "icrp107-database": version("icrp107-database"),
            "generator": "python -m harmonize._nuclide_table",
        },
        "nuclides": nuclides,
    }


def table_bytes(table: dict[str, Any]) -> bytes:
    """Deterministic serialisation (sorted keys, one nuclide per block)."""
    return (json.dumps(table, indent=1, sort_keys=True) + "\n").encode("utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or ``--check``) the table next to this module; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m harmonize._nuclide_table")
    parser.add_argument("--check", action="store_true", help="exit 1 if the table differs")
    args = parser.parse_args(argv)
    path = Path(__file__).resolve().parent / "data" / NUCLIDE_TABLE
    data = table_bytes(build_table())
    if args.check:
        same = path.exists() and path.read_bytes() == data
        print(f"{path}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    write_bytes_atomic(path, data, overwrite=True)
    print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
