"""Observer segmentations: written by the phantom, chosen by the adapters' config."""

from __future__ import annotations

import numpy as np
import pytest

from harmonize import open_study, save_study
from harmonize.phantom import PhantomConfig, make_patient, simulate_study
from harmonize.segmentation import observer_labels
from workflows.bordet import BordetWorkflow

SMALL = PhantomConfig(
    voxel_size_mm=6.8,
    fov_mm=(210.0, 258.0, 360.0),
    cycles=(1,),
    n_lesions=(3, 4),
    lesion_volume_ml=(5.0, 60.0),
    observer_segmentation=True,
    times_h=(24.0, 72.0, 168.0),
)


@pytest.fixture(scope="module")
def study():
    return simulate_study(make_patient(0, 5, SMALL), 1, 5, SMALL)[0]


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_observer_map_differs_but_resembles_the_truth(study, tmp_path):
    true, seen = study["labels"].values, study["labels_observer"].values
    assert set(np.unique(seen)) <= set(np.unique(true))
    assert not np.array_equal(true, seen)
    np.testing.assert_array_equal(seen > 0, true > 0)  # body outline kept
    for voi_id in (2, 3, 4, 5):  # organs: 3 mm boundary error on 6.8 mm voxels
        assert 0.7 < _dice(true == voi_id, seen == voi_id) < 1.0
    lesion_ids = study["voi"].values[study["voi_kind"].values == "lesion"]
    assert lesion_ids.size >= 3
    for voi_id in lesion_ids:
        assert (seen == voi_id).any() and _dice(true == voi_id, seen == voi_id) > 0.2
    path = tmp_path / "s.nc"
    save_study(study, path)
    np.testing.assert_array_equal(open_study(path)["labels_observer"].values, seen)


def test_adapter_chooses_its_segmentation(study):
    given = BordetWorkflow().run(study).voi_dose.set_index("voi_id")
    observed = BordetWorkflow(segmentation="observer").run(study).voi_dose.set_index("voi_id")
    assert given.index.equals(observed.index)
    assert not np.allclose(given["volume_ml"], observed["volume_ml"])
    plain = study.drop_vars("labels_observer")
    with pytest.raises(Exception, match="labels_observer"):
        BordetWorkflow(segmentation="observer").run(plain)


def test_lesion_threshold_follows_the_declared_fraction():
    labels = np.zeros((20, 20, 20), dtype=np.int32)
    labels[2:18, 2:18, 2:18] = 1
    labels[8:12, 8:12, 8:12] = 10
    image = np.zeros(labels.shape)
    zz, yy, xx = np.meshgrid(*(np.arange(20) - 9.5,) * 3, indexing="ij")
    image[:] = np.exp(-(zz**2 + yy**2 + xx**2) / (2 * 3.0**2))
    import pandas as pd

    vois = pd.DataFrame({"voi_id": [1, 10], "kind": ["body", "lesion"], "parent_id": [0, 1]})
    out = observer_labels(labels, vois, image, 4.0, np.random.default_rng(0), lesion_threshold=0.5)
    inside = out == 10
    # the drawn lesion is the connected region at ≥ 50 % of the maximum, nothing else
    assert np.all(image[inside] >= 0.5 * image.max() - 1e-12)
    assert inside.sum() == int((image >= 0.5 * image.max()).sum())
