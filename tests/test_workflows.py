"""Built-in adapters pass the conformance suite; the adapter contract and discovery behave."""

from __future__ import annotations

import warnings

import pytest

from harmonize import registry
from harmonize.testing import WorkflowConformance, conformance_study
from harmonize.workflow import WorkflowError, select_time_points
from workflows.bordet import BordetWorkflow
from workflows.milan import MilanWorkflow
from workflows.montpellier import MontpellierWorkflow


class TestMontpellier(WorkflowConformance):
    @pytest.fixture
    def adapter(self):
        return MontpellierWorkflow()


class TestBordet(WorkflowConformance):
    @pytest.fixture
    def adapter(self):
        return BordetWorkflow()


class TestMilan(WorkflowConformance):
    @pytest.fixture
    def adapter(self):
        return MilanWorkflow()

    @pytest.fixture
    def truth_adapter(self):
        # perfect-resolution images: no partial-volume loss to correct
        return MilanWorkflow(recovery_correction=False)


def test_builtins_are_discovered_through_entry_points():
    installed = registry.list_workflows(refresh=True)
    assert {"montpellier", "bordet", "milan"} <= set(installed)
    assert installed["bordet"] is BordetWorkflow
    table = registry.workflows_table()
    assert set(table["name"]) >= {"montpellier", "bordet", "milan"}


def test_unknown_workflow_lists_installed():
    with pytest.raises(
        WorkflowError, match="unknown workflow 'nope'; installed workflows: .*bordet"
    ):
        registry.get_workflow("nope")


def test_broken_plugin_warns_not_crashes(monkeypatch):
    class BrokenEP:
        name, value, dist = "broken", "nowhere:Thing", None

        def load(self):
            raise ImportError("no module named nowhere")

    class NotAnAdapter:
        name, value, dist = "odd", "builtins:dict", None

        def load(self):
            return dict

    monkeypatch.setattr(registry, "entry_points", lambda group: [BrokenEP(), NotAnAdapter()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = registry.list_workflows(refresh=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, registry.PluginWarning)]
    assert any("'broken'" in m and "failed to load" in m for m in messages)
    assert any("'odd'" in m and "not a WorkflowAdapter" in m for m in messages)
    assert "broken" not in found
    monkeypatch.undo()
    registry.list_workflows(refresh=True)


def test_overrides_are_typed_and_recorded():
    adapter = BordetWorkflow.from_overrides(
        {"time_points_h": "24,96,168", "density_from_ct": "false"}
    )
    assert adapter.config.time_points_h == (24.0, 96.0, 168.0)
    assert adapter.config.density_from_ct is False
    study, _ = conformance_study(noise=True)
    prov = adapter.run(study).provenance["workflow"]
    assert prov["overrides"] == {"time_points_h": "24,96,168", "density_from_ct": "false"}
    assert prov["parameters"]["time_points_h"] == [24.0, 96.0, 168.0]
    with pytest.raises(WorkflowError, match="unknown parameter"):
        BordetWorkflow(no_such=1)
    # ``config`` is not a parameter of the method; as a string override it must not be
    # taken for the adapter's config object.
    with pytest.raises(WorkflowError, match=r"unknown parameter\(s\) \['config'\]"):
        BordetWorkflow.from_overrides({"config": "x"})
    with pytest.raises(WorkflowError, match="cannot read 'maybe'"):
        BordetWorkflow.from_overrides({"density_from_ct": "maybe"})


def test_missing_time_point_is_a_clear_error():
    study, _ = conformance_study(noise=True)
    with pytest.raises(WorkflowError, match=r"lacks time point\(s\) \[36.0\] h"):
        select_time_points(study, (24.0, 36.0), tolerance_h=6.0)
    with pytest.raises(WorkflowError, match="lacks time point"):
        MilanWorkflow(time_points_h=(24.0, 300.0)).run(study)


def test_adapters_differ_on_the_same_study():
    study, _ = conformance_study(noise=True)
    doses = {
        cls.name: cls().run(study).voi_dose.set_index("voi_id")["dose_mean_gy"]
        for cls in (MontpellierWorkflow, BordetWorkflow, MilanWorkflow)
    }
    lesion = doses["bordet"].index[-1]
    values = [doses[n].loc[lesion] for n in doses]
    # three genuinely different methods: no two agree to 1 %
    assert len({round(v, 2) for v in values}) == 3
    assert max(values) / min(values) > 1.01


def test_dvh_organ_includes_lesions_like_the_dose_indices():
    # the liver holds lesion_02: with organ_includes_lesions its DVH is read from the liver
    # and lesion voxels together, as its voi_dose indices are; the lesion's own DVH and the
    # other organs' are unchanged
    from harmonize.testing import check_dvh

    study, _ = conformance_study(noise=True)
    own = MontpellierWorkflow().run(study)
    merged_adapter = MontpellierWorkflow(organ_includes_lesions=True)
    merged = merged_adapter.run(study)
    check_dvh(merged_adapter, study)  # 101 rows per VOI, equal to the merged voi_dose
    a = own.dvh.set_index(["voi_id", "volume_pct"])["dose_gy"]
    b = merged.dvh.set_index(["voi_id", "volume_pct"])["dose_gy"]
    assert (a.loc[2] != b.loc[2]).any()  # the liver changes
    assert a.drop(index=2, level="voi_id").equals(b.drop(index=2, level="voi_id"))
    # the merged liver's maximum is the hotter of liver and lesion maxima
    assert b.loc[(2, 0.0)] == max(a.loc[(2, 0.0)], a.loc[(11, 0.0)])


def test_dvh_carries_the_common_columns_and_milan_has_none():
    study, _ = conformance_study(noise=True)
    dvh = BordetWorkflow().run(study).dvh
    assert dvh.columns.tolist() == [
        "patient_id",
        "cycle",
        "center",
        "workflow",
        "workflow_version",
        "voi_id",
        "volume_pct",
        "dose_gy",
    ]
    assert set(dvh["workflow"]) == {"bordet"} and set(dvh["cycle"]) == {1}
    assert MilanWorkflow().run(study).dvh.empty
