"""Synthetic cohort: determinism, truth consistency with the true activity, cohort I/O."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

import harmonize as hz
from harmonize.phantom import (
    PhantomConfig,
    _concentration_mbq_ml,
    make_patient,
    simulate_study,
    write_cohort,
)

SMALL = PhantomConfig(
    voxel_size_mm=9.28, fov_mm=(185.6, 259.84, 371.2), cycles=(1, 4), n_lesions=(2, 4)
)


def test_same_seed_identical_other_seed_different():
    a = simulate_study(make_patient(0, 3, SMALL), 1, 3, SMALL)
    b = simulate_study(make_patient(0, 3, SMALL), 1, 3, SMALL)
    c = simulate_study(make_patient(0, 4, SMALL), 1, 4, SMALL)
    np.testing.assert_array_equal(a[0]["activity"].values, b[0]["activity"].values)
    np.testing.assert_array_equal(a[0]["labels"].values, b[0]["labels"].values)
    assert a[1].equals(b[1])
    assert not np.array_equal(a[0]["activity"].values, c[0]["activity"].values)


def test_truth_tia_is_the_integral_of_the_true_tac():
    patient = make_patient(1, 5, SMALL)
    _, truth = simulate_study(patient, 1, 5, SMALL)
    kin = patient.kinetics[1]
    voxel_ml = SMALL.voxel_size_mm**3 / 1000
    counts = np.bincount(patient.labels.ravel())[kin["voi_id"].to_numpy()]
    for k, row in enumerate(truth.itertuples(index=False)):
        tac = lambda t, k=k: _concentration_mbq_ml(kin.iloc[[k]], np.array([t]))[0, 0]  # noqa: E731
        numeric, _ = integrate.quad(tac, 0, np.inf, limit=200, epsabs=0, epsrel=1e-10)
        # analytic TIA of the bi-exponential vs adaptive quadrature: 1e-6 relative
        assert row.tia_mbq_h == pytest.approx(numeric * counts[k] * voxel_ml, rel=1e-6)


def test_truth_mass_volume_and_dose_are_consistent():
    patient = make_patient(0, 1, SMALL)
    _, truth = simulate_study(patient, 4, 1, SMALL)
    voxel_ml = SMALL.voxel_size_mm**3 / 1000
    for row in truth.itertuples(index=False):
        mask = patient.labels == row.voi_id
        assert row.volume_ml == pytest.approx(mask.sum() * voxel_ml, rel=1e-12)
        assert row.mass_g == pytest.approx(patient.density_g_ml[mask].sum() * voxel_ml, rel=1e-12)
    lesions = truth[truth["voi_kind"] == "lesion"]
    assert len(lesions) >= 2 and (lesions["dose_mean_gy"] > 0).all()
    # energy balance: the truth (harmonize.truth, dose-point kernel) of a 1.5-2 kg liver is
    # local deposition of the electrons (0.0853 Gy·g/(MBq·h), minus < 1 % lost at the edge)
    # plus the photons absorbed in it — its own and those of the rest of the body — which
    # can at most add the whole photon energy, 35.1/147.9 keV = +23.7 %
    liver = truth.set_index("voi_name").loc["liver"]
    ldm = liver["tia_mbq_h"] * 0.0853 / liver["mass_g"]
    assert 0.99 < liver["dose_mean_gy"] / ldm < 1.237


def test_noise_free_images_equal_the_true_activity():
    cfg = PhantomConfig(**{**SMALL.__dict__, "noise": False, "psf_fwhm_mm": 0.0})
    patient = make_patient(0, 2, cfg)
    study, _ = simulate_study(patient, 1, 2, cfg)
    kin = patient.kinetics[1]
    conc = _concentration_mbq_ml(kin, study["time"].values) * 1e6  # Bq/mL
    lut = np.zeros((kin["voi_id"].max() + 1, conc.shape[1]))
    lut[kin["voi_id"].to_numpy()] = conc
    expected = np.moveaxis(lut[patient.labels], -1, 0)
    np.testing.assert_allclose(study["activity"].values, expected, rtol=1e-6)  # float32 storage


def test_cohort_round_trip_and_no_overwrite(tmp_path):
    write_cohort(tmp_path, n_patients=2, seed=0, config=SMALL)
    cohort = hz.open_cohort(tmp_path)
    assert list(cohort) == [("P001", 1), ("P001", 4), ("P002", 1), ("P002", 4)]
    assert set(cohort.truth.columns) >= {
        "patient_id",
        "cycle",
        "voi_id",
        "voi_kind",
        "tia_mbq_h",
        "mass_g",
        "dose_mean_gy",
    }
    study = cohort["P002", 4]
    assert study.attrs["patient_id"] == "P002" and study.attrs["cycle"] == 4
    with pytest.raises(FileExistsError, match="overwrite"):
        write_cohort(tmp_path, n_patients=2, seed=0, config=SMALL)


def test_cohort_written_by_two_workers_is_identical(tmp_path):
    # every study and truth row is seeded by (seed, patient, cycle) alone: the process that
    # writes it must not matter, down to the bytes of every file
    write_cohort(tmp_path / "one", n_patients=3, seed=4, config=SMALL)
    write_cohort(tmp_path / "two", n_patients=3, seed=4, config=SMALL, workers=2)
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    with pytest.raises(ValueError, match="workers"):
        write_cohort(tmp_path / "zero", n_patients=1, config=SMALL, workers=0)


def test_tumour_uptake_falls_over_cycles():
    patient = make_patient(2, 11, SMALL)
    table = patient.vois
    assert table["kind"].value_counts()["organ"] == 4
    n_lesions = (table["kind"] == "lesion").sum()
    assert 2 <= n_lesions <= 4
    c1, c4 = patient.kinetics[1], patient.kinetics[4]
    lesion = table["kind"].to_numpy() == "lesion"
    # tumour uptake falls by 0.9 per cycle (×0.73 at cycle 4), within the ±8 % cycle jitter
    ratio = (c4["tia_per_ml_mbq_h"] / c1["tia_per_ml_mbq_h"]).to_numpy()[lesion]
    assert np.all((ratio > 0.9**3 * 0.92 / 1.08) & (ratio < 0.9**3 * 1.08 / 0.92))


def test_clinical_kinetics_late_peaks_necrosis_same_anatomy():
    from harmonize import phantom

    clinical = PhantomConfig(**{**SMALL.__dict__, "kinetics": "clinical", "cycles": (1,)})
    gentle = PhantomConfig(**{**SMALL.__dict__, "cycles": (1,)})
    peaks, n_lesions, n_cores = [], 0, 0
    for index in range(6):
        a = make_patient(index, 21, clinical)
        b = make_patient(index, 21, gentle)
        np.testing.assert_array_equal(a.labels, b.labels)  # own random streams
        kin = a.kinetics[1].set_index("voi_id")
        lesions = a.vois.loc[a.vois["kind"] == "lesion", "voi_id"]
        n_lesions += lesions.size
        lw = kin.loc[lesions, "lambda_washout_per_h"].to_numpy()
        lu = kin.loc[lesions, "lambda_uptake_per_h"].to_numpy()
        peaks.extend(np.log(lu / lw) / (lu - lw))
        n_cores += sum(
            bool((a.uptake_scale[a.labels == v] == phantom.NECROSIS_UPTAKE).any()) for v in lesions
        )
        assert set(np.unique(a.uptake_scale)) <= {1.0, phantom.NECROSIS_UPTAKE}
    peaks = np.asarray(peaks)
    late = peaks > 20.0
    # every late peak lies in 24–48 h (or at 0.9/λw for a short washout), early ones < 20 h
    assert np.all((peaks[late] >= 24.0 - 1e-6) & (peaks[late] <= 48.0 + 1e-6))
    assert 0 < late.sum() < n_lesions  # 40 % expected of ~18 lesions
    assert n_cores >= 1
    # the truth TIA integrates the necrotic core: below c0·(1/λw − 1/λu)·volume when cored
    patient = make_patient(0, 21, clinical)
    _, truth = simulate_study(patient, 1, 21, clinical)
    kin = patient.kinetics[1].set_index("voi_id")
    voxel_ml = SMALL.voxel_size_mm**3 / 1000
    for row in truth[truth["voi_kind"] == "lesion"].itertuples(index=False):
        full = kin.loc[row.voi_id, "tia_per_ml_mbq_h"] * row.volume_ml
        scale = patient.uptake_scale[patient.labels == row.voi_id].sum() * voxel_ml
        assert row.tia_mbq_h == pytest.approx(kin.loc[row.voi_id, "tia_per_ml_mbq_h"] * scale)
        assert row.tia_mbq_h <= full * (1 + 1e-12)
