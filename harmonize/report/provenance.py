"""Sections 12 and 13 of the report: provenance of every input, and the references.

Provenance: file and study hashes, software and schema versions, stored agreement tables
as delivered.
"""

from __future__ import annotations

import json
import re
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
    # the published cutoffs and the centres' methods (shared/design/METHODS.md)
    "Mileva2024": "Mileva M et al. J Nucl Med 2024;65:236–244 (LUMEN, NCT01842165)",
    "Hebert2024": "Hebert K et al. J Nucl Med 2024;65:923–930. doi:10.2967/jnumed.123.267023",
    "Maccauro2024": ("Maccauro M et al. Eur J Nucl Med Mol Imaging 2024;52:291–304 (LUTADOSE)"),
    "Santoro2018": "Santoro L et al. EJNMMI Res 2018. doi:10.1186/s13550-018-0459-4",
    "Santoro2021": "Santoro L et al. EJNMMI Res 2021. doi:10.1186/s13550-020-00737-8",
    "Marin2017": "Marin G et al. EJNMMI Phys 2017. doi:10.1186/s40658-017-0174-7",
    "Lanconelli2012": (
        "Lanconelli N, Pacilio M, Lo Meo S, et al. A free database of radionuclide voxel S "
        "values for the dosimetry of nonuniform activity distributions. Phys Med Biol "
        "2012;57:517–545. doi:10.1088/0031-9155/57/2/517"
    ),
    "BroschLenz2024": (
        "Brosch-Lenz J et al. SNMMI 177Lu Dosimetry Challenge, part 3. J Nucl Med "
        "2024;65:1166. doi:10.2967/jnumed.123.267293"
    ),
    # the statistics
    "BA1986": (
        "Bland JM, Altman DG. Statistical methods for assessing agreement between two methods "
        "of clinical measurement. Lancet 1986;327:307–310. doi:10.1016/S0140-6736(86)90837-8"
    ),
    "BA2007": (
        "Bland JM, Altman DG. Agreement between methods of measurement with multiple "
        "observations per individual. J Biopharm Stat 2007;17:571–582. "
        "doi:10.1080/10543400701329422"
    ),
    "Carkeet2015": (
        "Carkeet A. Exact parametric confidence intervals for Bland–Altman limits of "
        "agreement. Optom Vis Sci 2015;92:e71–e80. doi:10.1097/OPX.0000000000000513"
    ),
    "BA1996a": (
        "Bland JM, Altman DG. Measurement error. BMJ 1996;313:744. doi:10.1136/bmj.313.7059.744"
    ),
    "Lin2000": (
        "Lin LI-K. A note on the concordance correlation coefficient. Biometrics "
        "2000;56:324–325. doi:10.1111/j.0006-341X.2000.00324.x"
    ),
    "Deming1943": "Deming WE. Statistical adjustment of data. Wiley, 1943",
    "Linnet1990": (
        "Linnet K. Estimation of the linear relationship between the measurements of two "
        "methods with proportional errors. Stat Med 1990;9:1463–1473. doi:10.1002/sim.4780091210"
    ),
    "Fleiss1971": (
        "Fleiss JL. Measuring nominal scale agreement among many raters. Psychol Bull "
        "1971;76:378–382. doi:10.1037/h0031619"
    ),
    "SF1979": (
        "Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability. "
        "Psychol Bull 1979;86:420–428. doi:10.1037/0033-2909.86.2.420"
    ),
    "MW1996": (
        "McGraw KO, Wong SP. Forming inferences about some intraclass correlation "
        "coefficients. Psychol Methods 1996;1:30–46. doi:10.1037/1082-989X.1.1.30"
    ),
}

#: How a citation appears in the page: "Carkeet2015", "Carkeet 2015" or "Brosch-Lenz 2024".
_CITATION = re.compile(r"\b([A-Z][A-Za-z]*(?:-[A-Z][A-Za-z]*)?|BA|SF|MW|PB) ?((?:19|20)\d\d)\b")
#: Words followed by a year that are not citations (a drug label, a schema version, ...).
#: ("J Nucl Med 2024", "Eur J Nucl Med Mol Imaging 2024" are journal names in a source column).
_NOT_CITATIONS = frozenset(
    {"ICRP", "NETTER", "SNMMI", "EANM", "MIRD", "ISO", "Lutathera", "Med", "Imaging"}
)


#: Spellings of a citation in method texts -> the bibliography key.
_ALIASES = {
    "BlandAltman1986": "BA1986",
    "BlandAltman1996": "BA1996a",  # "within-subject SD, Bland-Altman 1996" (compare.agreement)
    "BlandAltman1999": "BA1999",
    "BlandAltman2007": "BA2007",
    "ShroutFleiss1979": "SF1979",
    "PassingBablok1983": "PB1983",
}


def cited_keys(text: str) -> set[str]:
    """Citation keys ("Name2024") found in a page's text (figures excluded)."""
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    # "Bland-Altman 1986/1999": the second year cites the same authors
    text = re.sub(r"\b([A-Z][A-Za-z-]+) ((?:19|20)\d\d)/((?:19|20)\d\d)\b", r"\1 \2, \1 \3", text)
    keys = {
        (name + year).replace("-", "")
        for name, year in _CITATION.findall(text)
        if name not in _NOT_CITATIONS
    }
    return {_ALIASES.get(k, k) for k in keys}


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
    parts = ['<h2 id="provenance">12. Provenance</h2>']
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


def _references_section(cited_text: str = "") -> str:
    """Every reference the page cites (resolved by key), then the methods' own sources."""
    keys = cited_keys(cited_text)
    unresolved = sorted(keys - set(_REFERENCES))
    shown = sorted(keys & set(_REFERENCES)) or sorted(_REFERENCES)
    items = "".join(f"<li><b>{_esc(k)}</b>: {_esc(_REFERENCES[k])}</li>" for k in shown)
    if unresolved:
        items += "".join(f"<li><b>{_esc(k)}</b>: not in the bibliography</li>" for k in unresolved)
    return f'<h2 id="references">13. References</h2><ul>{items}</ul>'
