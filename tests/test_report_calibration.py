"""The report shows each centre's calibration phantom: the numbers the run wrote."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from harmonize.calibration import read_calibration
from harmonize.imaging import available_profiles
from harmonize.imaging.nema import measure_calibration, recovery_curve
from harmonize.phantom import PhantomConfig, write_cohort
from harmonize.report import write_report
from harmonize.report.html import _num
from harmonize.runner import run_cohort

# coarse voxels keep the run small (1 patient, 1 cycle, Milan only); the studies are imaged
# with the bordet camera, so Milan applies bordet's calibration phantom ("study" profile)
SMALL = PhantomConfig(
    voxel_size_mm=9.28,
    fov_mm=(185.6, 259.84, 371.2),
    cycles=(1,),
    n_lesions=(2, 3),
    imaging_profile="bordet",
    times_h=(24.0, 168.0),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    cohort = write_cohort(root / "cohort", n_patients=1, seed=3, config=SMALL)
    report = run_cohort(cohort, "milan", root / "results", include_truth=False)
    assert report.ok, report.failures
    write_report(root / "results", root / "report.html")
    return root


def _section(html: str) -> str:
    start = html.index('<h2 id="calibration">')
    return html[start : html.index("<h2", start + 10)]


def test_run_writes_every_profile_and_who_used_it(run):
    table = read_calibration(run / "results")
    spheres = table.loc[table["kind"] == "sphere"]
    assert set(spheres["profile"]) == set(available_profiles())
    assert (spheres.groupby("profile").size() == 6).all()
    used = spheres.drop_duplicates("profile").set_index("profile")["used_by"]
    assert used["bordet"] == "milan, studies"
    assert used.drop("bordet").eq("").all()
    # the table holds the curve Milan applied (same seed, noise, mode and voxel size)
    applied = recovery_curve("bordet", 9.28, "fast")
    bordet = table.loc[(table["profile"] == "bordet") & (table["kind"] == "curve")]
    np.testing.assert_allclose(bordet["rc_fit"], applied(bordet["volume_ml"].to_numpy()))


def test_report_shows_each_centres_rc_table_as_measure_calibration_gives_it(run):
    section = _section((run / "report.html").read_text(encoding="utf-8"))
    assert section.startswith('<h2 id="calibration">8. ')
    assert section.count("<img") == 1  # the RC(volume) figure
    for profile in available_profiles():
        expected = measure_calibration(profile, 9.28, mode="fast")
        head = section.index(f'<h4 id="rc-{profile}-fast-9-28">')
        block = section[head : section.index("</table>", head)]
        cells = re.findall(r'<td class="num">([^<]*)</td>', block)
        rows = np.array(cells).reshape(6, 4)  # diameter, volume, RC measured, RC fitted
        assert list(rows[:, 0]) == [_num(d) for d in expected.table["diameter_mm"]]
        assert list(rows[:, 2]) == [_num(r) for r in expected.table["rc"]]
        fitted = expected.curve(expected.table["volume_ml"].to_numpy())
        assert list(rows[:, 3]) == [_num(r) for r in fitted]
        # calibration factor against the nominal sensitivity, in the summary table
        summary = section[: section.index("<figure>")]
        row = summary[summary.index(f"<td>{profile}</td>") :]
        row = row[: row.index("</tr>")]
        assert f'<td class="num">{_num(expected.calibration_cps_per_mbq)}</td>' in row
        assert "<td>fast</td>" in row


def test_section_numbers_follow_the_contents(run):
    html = (run / "report.html").read_text(encoding="utf-8")
    numbers = [int(n) for n in re.findall(r"<h2[^>]*>(\d+)\. ", html)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == len(re.findall(r'<li><a href="#', html))


def test_results_without_calibration_give_a_note(tmp_path):
    assert read_calibration(tmp_path).empty
    from harmonize.report.calibration import _calibration_section

    html = _calibration_section(pd.DataFrame(), "8")
    assert "recorded no calibration phantom" in html and "<table" not in html


def test_a_malformed_calibration_table_is_named(tmp_path):
    folder = tmp_path / "calibration"
    folder.mkdir()
    pd.DataFrame({"profile": ["bordet"]}).to_parquet(folder / "bordet_fast_4p8mm.parquet")
    with pytest.raises(ValueError, match="calibration tables lack the columns"):
        read_calibration(tmp_path)
