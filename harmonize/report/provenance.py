"""Sections 9 and 10 of the report: provenance of every input, and the references.

Provenance: file and study hashes, software and schema versions, stored agreement tables
as delivered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from harmonize.report._data import _Data
from harmonize.report.html import _details, _esc, _note, _num, _p, _table

#: No public names: :mod:`harmonize.report` re-exports the package's public API.
__all__: list[str] = []

_REFERENCES = {
    "Lassmann2011": (
        "Lassmann M, Chiesa C, Flux G, Bardiès M. EANM Dosimetry Committee guidance document: "
        "good practice of clinical dosimetry reporting. Eur J Nucl Med Mol Imaging "
        "2011;38:192–200. doi:10.1007/s00259-010-1549-3"
    ),
    "Stokke2024": (
        "Stokke C, Gnesin S, Tran-Gia J, et al. EANM guidance document: dosimetry for "
        "first-in-human studies and early phase clinical trials. Eur J Nucl Med Mol Imaging "
        "2024;51:1268–1286. doi:10.1007/s00259-024-06640-x"
    ),
    "BA1999": (
        "Bland JM, Altman DG. Measuring agreement in method comparison studies. Stat Methods "
        "Med Res 1999;8:135–160. doi:10.1177/096228029900800204"
    ),
    "PB1983": (
        "Passing H, Bablok W. A new biometrical procedure for testing the equality of "
        "measurements from two different analytical methods. J Clin Chem Clin Biochem "
        "1983;21:709–720. doi:10.1515/cclm.1983.21.11.709"
    ),
    "Lin1989": (
        "Lin LI. A concordance correlation coefficient to evaluate reproducibility. "
        "Biometrics 1989;45:255–268. doi:10.2307/2532051"
    ),
    "Cohen1960": (
        "Cohen J. A coefficient of agreement for nominal scales. Educ Psychol Meas "
        "1960;20:37–46. doi:10.1177/001316446002000104"
    ),
}


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _provenance_section(
    data: _Data,
    input_files: Mapping[str, tuple[int, str]] | None,
    stored: Mapping[str, pd.DataFrame],
) -> str:
    parts = ['<h2 id="provenance">9. Provenance</h2>']
    schema_versions = (
        sorted(set(data.run["schema_version"].astype(str)))
        if "schema_version" in data.run.columns
        else []
    )
    from harmonize.schema import SCHEMA_VERSION

    parts.append(
        _p(
            f"Results schema version(s) recorded by the runs: {', '.join(schema_versions) or 'not recorded'}; "
            f"read by harmonize schema {SCHEMA_VERSION}. Report built with harmonize-dosimetry "
            f"{_version('harmonize-dosimetry')}, numpy {_version('numpy')}, pandas {_version('pandas')}, "
            f"scipy {_version('scipy')}, matplotlib {_version('matplotlib')}."
        )
    )
    if input_files:
        rows = [
            {"file (relative to the results directory)": k, "bytes": f"{n:,}", "sha256": h}
            for k, (n, h) in sorted(input_files.items())
        ]
        parts.append("<h3>Input files</h3>")
        parts.append(
            _details(
                f"{len(rows)} Parquet files with their SHA-256",
                _table(pd.DataFrame(rows), numeric=["bytes"], cell_class={"sha256": "hash"}),
            )
        )
    if len(data.run) and "input_sha256" in data.run.columns:
        run = data.run.sort_values(["patient_id", "cycle", "workflow"])
        rows = []
        for (pid, cyc), sub in run.groupby(["patient_id", "cycle"], sort=True):
            hashes = sorted(set(sub["input_sha256"].astype(str)))
            rows.append(
                {
                    "patient": pid,
                    "cycle": str(int(cyc)),
                    "workflows": ", ".join(sorted(sub["workflow"].astype(str))),
                    "study content SHA-256": " / ".join(hashes),
                    "same input for every workflow": "yes"
                    if len(hashes) == 1
                    else f"NO ({len(hashes)} inputs)",
                }
            )
        same = all(r["same input for every workflow"] == "yes" for r in rows)
        parts.append("<h3>Study inputs</h3>")
        parts.append(
            _p(
                "Every workflow run records the SHA-256 of the study content it read (images, labels, times, grid; identifying attributes are not hashed). "
                + (
                    "All workflows read identical inputs for every patient-cycle."
                    if same
                    else "Some workflows read different inputs: see the rows marked NO."
                )
            )
        )
        parts.append(
            _details(
                f"{len(rows)} patient-cycles with their input hash",
                _table(pd.DataFrame(rows), cell_class={"study content SHA-256": "hash"}),
            )
        )
        soft_rows = []
        for w, sub in run.groupby("workflow", sort=True):
            merged: dict[str, set[str]] = {}
            for text in sorted(set(sub["software_json"].astype(str))):
                for k, v in json.loads(text).items():
                    merged.setdefault(k, set()).add(str(v))
            for k in sorted(merged):
                soft_rows.append(
                    {"workflow": w, "package": k, "version(s)": ", ".join(sorted(merged[k]))}
                )
        if soft_rows:
            parts.append("<h3>Software recorded by the runs</h3>")
            parts.append(
                _details(f"{len(soft_rows)} package versions", _table(pd.DataFrame(soft_rows)))
            )
    else:
        parts.append(
            _p("The results hold no run table: study hashes and software versions not recorded.")
        )
    for name, table in sorted(stored.items()):
        if len(table):
            show = table.copy()
            for c in ("estimate", "ci_low", "ci_high"):
                if c in show.columns:
                    show[c] = [_num(v, 4) for v in show[c]]
            parts.append(f"<h3>Stored agreement table: {_esc(name)}</h3>")
            parts.append(
                _details(
                    f"{len(show)} rows as delivered (not recomputed)", _table(show.astype(str))
                )
            )
    if data.notes:
        parts += [_note(n) for n in data.notes]
    return "".join(parts)


def _references_section() -> str:
    items = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in sorted(_REFERENCES.items()))
    return f'<h2 id="references">10. References</h2><ul>{items}</ul>'
