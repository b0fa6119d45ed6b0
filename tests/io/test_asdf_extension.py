"""Tests of the stellarml ASDF extension: registration, schemas, converters, round trips."""

import importlib.resources
import io
import re

import asdf
import astropy.units as u
import numpy as np
import pytest
import yaml
from asdf.exceptions import ValidationError

from stellarml.io.asdf.extension import (
    LABEL_CALIBRATION_TAG,
    LABEL_SPEC_TAG,
    MANIFEST_URI,
    PREPARATION_SETTINGS_TAG,
    REMAP_ENSEMBLE_TAG,
    REMAP_MODEL_TAG,
)
from stellarml.labels import LABELS, LabelSpec

RESOURCES = importlib.resources.files("stellarml.io.asdf") / "resources"
SCHEMA_FILES = sorted(p.name for p in (RESOURCES / "schemas").iterdir() if p.name.endswith(".yaml"))
EXTENSION_URI = "asdf://stellarml.org/stellarml/extensions/stellarml-1.2.0"
PREVIOUS_EXTENSION_URI = "asdf://stellarml.org/stellarml/extensions/stellarml-1.1.0"
OLD_EXTENSION_URI = "asdf://stellarml.org/stellarml/extensions/stellarml-1.0.0"
TAGS = "asdf://stellarml.org/stellarml/tags/"


def roundtrip(tree):
    """Write ``tree`` to an in-memory ASDF file and read it back (fully loaded)."""
    buff = io.BytesIO()
    asdf.AsdfFile(tree).write_to(buff)
    buff.seek(0)
    with asdf.open(buff, lazy_load=False, memmap=False) as af:
        return dict(af.tree), buff.getvalue()


def test_extension_registered_via_entry_points():
    uris = [ext.extension_uri for ext in asdf.get_config().extensions]
    assert EXTENSION_URI in uris
    ext = next(e for e in asdf.get_config().extensions if e.extension_uri == EXTENSION_URI)
    assert {t.tag_uri for t in ext.tags} == {
        REMAP_MODEL_TAG,
        REMAP_ENSEMBLE_TAG,
        LABEL_CALIBRATION_TAG,
        LABEL_SPEC_TAG,
        PREPARATION_SETTINGS_TAG,
    }
    assert REMAP_MODEL_TAG.endswith("remap_model-1.1.0")
    assert ext.package_name == "stellarml"
    # files written under the earlier manifests (uncalibrated models; no ensembles) stay readable
    by_uri = {e.extension_uri: e for e in asdf.get_config().extensions}
    assert {t.tag_uri for t in by_uri[PREVIOUS_EXTENSION_URI].tags} == {
        TAGS + "remap_model-1.0.0",
        TAGS + "remap_ensemble-1.0.0",
        LABEL_SPEC_TAG,
        PREPARATION_SETTINGS_TAG,
    }
    assert {t.tag_uri for t in by_uri[OLD_EXTENSION_URI].tags} == {
        TAGS + "remap_model-1.0.0",
        LABEL_SPEC_TAG,
        PREPARATION_SETTINGS_TAG,
    }
    # the newest manifest comes first, so asdf writes with it
    ours = [e.extension_uri for e in asdf.get_config().extensions if e.package_name == "stellarml"]
    assert ours[:3] == [EXTENSION_URI, PREVIOUS_EXTENSION_URI, OLD_EXTENSION_URI]


def test_manifest_resource():
    manifest = yaml.safe_load(asdf.get_config().resource_manager[MANIFEST_URI])
    assert manifest["id"] == MANIFEST_URI
    assert manifest["extension_uri"] == EXTENSION_URI
    for tag in manifest["tags"]:
        name = tag["tag_uri"].rsplit("/", 1)[1]
        assert tag["schema_uri"] == f"asdf://stellarml.org/stellarml/schemas/{name}"
        assert f"{name}.yaml" in SCHEMA_FILES


@pytest.mark.parametrize("filename", SCHEMA_FILES)
def test_schemas_load_and_are_valid(filename):
    uri = "asdf://stellarml.org/stellarml/schemas/" + filename[: -len(".yaml")]
    schema = asdf.schema.load_schema(uri)
    assert schema["id"] == uri
    asdf.schema.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["required"]


def test_schema_files_are_versioned():
    assert SCHEMA_FILES
    for filename in SCHEMA_FILES:
        assert re.fullmatch(r"[a-z_]+-\d+\.\d+\.\d+\.yaml", filename), filename


@pytest.mark.parametrize("name", sorted(LABELS))
def test_label_spec_round_trip(name):
    spec = LABELS[name]
    tree, raw = roundtrip({"spec": spec})
    assert tree["spec"] == spec
    assert tree["spec"].unit is spec.unit or tree["spec"].unit == spec.unit
    assert LABEL_SPEC_TAG.encode() in raw


def test_label_spec_units_use_asdf_astropy_tags():
    _, raw = roundtrip({"teff": LABELS["teff"], "logg": LABELS["logg"]})
    text = raw.decode("latin-1")
    assert "unit: !unit/unit-1.0.0 K" in text
    assert "unit: !<tag:astropy.org:astropy/units/unit-1.0.0> dex" in text


def test_label_spec_dex_survives_vounit_registration():
    """Reading a VOTable with a quoted 'dex' unit registers a custom VOUnit named dex.

    After that astropy's VOUnit formatter accepts ``u.dex``; asdf-astropy would
    then tag it as a VOUnit that reads back as the custom unit. The converter
    must still write the astropy tag.
    """
    from stellarml.catalog import _forget_shadowing_vounits

    u.Unit("'dex'", format="vounit")  # what astropy's VOTable reader does
    try:
        tree, raw = roundtrip({"spec": LABELS["logg"], "specs": list(LABELS.values())})
        assert tree["spec"].unit == u.dex
        assert tree["specs"] == list(LABELS.values())
        assert b"!unit/unit-1.0.0 dex" not in raw
    finally:
        # the process-wide side effect must not leak into other tests
        _forget_shadowing_vounits()
    with pytest.raises(ValueError, match="not supported by the VOUnit standard"):
        u.dex.to_string("vounit")  # astropy's normal state is back


def _yaml_file(body):
    """A minimal ASDF file whose tree is the YAML text ``body``."""
    return (
        "#ASDF 1.0.0\n#ASDF_STANDARD 1.6.0\n%YAML 1.1\n%TAG ! tag:stsci.edu:asdf/\n"
        "--- !core/asdf-1.1.0\n" + body + "...\n"
    ).encode()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ("{name: teff, unit: !unit/unit-1.0.0 K, description: d, physical_range: [1, 2]}", "ucd"),
        (
            "{name: teff, unit: !unit/unit-1.0.0 K, ucd: u, description: d, physical_range: [1]}",
            "too short",
        ),
        (
            "{name: Teff, unit: !unit/unit-1.0.0 K, ucd: u, description: d, "
            "physical_range: [1, 2]}",
            "does not match",
        ),
        (
            "{name: teff, unit: K, ucd: u, description: d, physical_range: [1, 2]}",
            "unit",
        ),
        (
            "{name: teff, unit: !unit/unit-1.0.0 K, ucd: u, description: d, "
            "physical_range: [1, 2], extra: 1}",
            "Additional properties",
        ),
    ],
)
def test_label_spec_schema_violations(fields, match):
    data = _yaml_file(f"spec: !<{LABEL_SPEC_TAG}> {fields}\n")
    with asdf.config_context() as cfg:
        cfg.validate_on_read = True
        with pytest.raises(ValidationError, match=match):
            with asdf.open(io.BytesIO(data)):
                pass


def test_valid_hand_written_label_spec():
    data = _yaml_file(
        f"spec: !<{LABEL_SPEC_TAG}> {{name: teff, unit: !unit/unit-1.0.0 K, "
        "ucd: phys.temperature.effective, description: T, physical_range: [2000, 60000]}\n"
    )
    with asdf.open(io.BytesIO(data)) as af:
        spec = af["spec"]
    assert spec == LabelSpec("teff", u.K, "phys.temperature.effective", "T", (2000.0, 60000.0))
    assert isinstance(spec.physical_range[0], float)


def test_materialize_copies_arrays(tmp_path):
    from stellarml.io.asdf.converters._common import materialize

    path = tmp_path / "a.asdf"
    asdf.AsdfFile({"a": np.arange(5.0), "nested": {"b": [np.ones(2)]}}).write_to(path)
    with asdf.open(path) as af:
        out = materialize({"a": af["a"], "nested": af["nested"], "q": 3 * u.K})
    assert type(out["a"]) is np.ndarray
    np.testing.assert_array_equal(out["a"], np.arange(5.0))
    assert type(out["nested"]["b"][0]) is np.ndarray
    assert out["q"] == 3 * u.K


@pytest.mark.parametrize("resolution", [2000.0, None])
def test_preparation_settings_round_trip(resolution):
    from stellarml.spectra import PreparationSettings, log_lambda_grid

    wave = log_lambda_grid(4000.0, 4100.0, 1e-4)
    settings = PreparationSettings(
        wavelength=wave, medium="air", resolution=resolution, continuum_iterations=0
    )
    tree, raw = roundtrip({"prep": settings})
    back = tree["prep"]
    assert back == settings
    assert back.wavelength.unit == u.AA
    np.testing.assert_array_equal(back.wavelength.value, settings.wavelength.value)
    assert PREPARATION_SETTINGS_TAG.encode() in raw


def test_preparation_settings_schema_rejects_2d_grid():
    data = _yaml_file(
        f"prep: !<{PREPARATION_SETTINGS_TAG}>\n"
        "  wavelength: !unit/quantity-1.3.0\n"
        "    unit: !unit/unit-1.0.0 Angstrom\n"
        "    value: !core/ndarray-1.1.0\n"
        "      data: [[4000.0, 4001.0], [4002.0, 4003.0]]\n"
        "      datatype: float64\n"
        "      shape: [2, 2]\n"
        "  medium: vacuum\n  resolution: null\n  continuum_width: 50.0\n"
        "  continuum_iterations: 3\n  min_good_fraction: 0.5\n  min_overlap_fraction: 0.5\n"
    )
    with asdf.config_context() as cfg:
        cfg.validate_on_read = True
        with pytest.raises(ValidationError, match="Wrong number of dimensions"):
            with asdf.open(io.BytesIO(data)):
                pass
