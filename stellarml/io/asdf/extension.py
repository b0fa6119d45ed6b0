"""The stellarml ASDF extension: manifest URIs, tags and converters."""

from asdf.extension import ManifestExtension

from .converters import (
    DTLModelConverter,
    EmulatorModelConverter,
    LabelCalibrationConverter,
    LabelSpecConverter,
    PreparationSettingsConverter,
    RemapEnsembleConverter,
    RemapModelConverter,
)

__all__ = [
    "CONVERTERS",
    "DTL_MANIFEST_URI",
    "DTL_MODEL_TAG",
    "EMULATOR_MODEL_TAG",
    "LABEL_CALIBRATION_TAG",
    "LABEL_SPEC_TAG",
    "MANIFEST_URI",
    "MODEL_CONVERTERS",
    "PHDL_MANIFEST_URI",
    "PREPARATION_SETTINGS_TAG",
    "REMAP_ENSEMBLE_TAG",
    "REMAP_MODEL_TAG",
    "STELLARML_EXTENSIONS",
]

#: URI of the current manifest.
MANIFEST_URI = "asdf://stellarml.org/stellarml/manifests/stellarml-1.2.0"
#: Older manifests still read (files written by earlier stellarml versions).
OLDER_MANIFEST_URIS = (
    "asdf://stellarml.org/stellarml/manifests/stellarml-1.1.0",
    "asdf://stellarml.org/stellarml/manifests/stellarml-1.0.0",
)
#: URI of the manifest of the DTL method's tag (an extension of its own).
DTL_MANIFEST_URI = "asdf://stellarml.org/stellarml/manifests/stellarml-dtl-1.0.0"
#: URI of the manifest of the emulator models' tag (an extension of its own).
PHDL_MANIFEST_URI = "asdf://stellarml.org/stellarml/manifests/stellarml-phdl-1.0.0"
#: Tag written for `~stellarml.models.emulator.EmulatorModel`.
EMULATOR_MODEL_TAG = "asdf://stellarml.org/stellarml/tags/emulator_model-1.0.0"
#: Tag written for `~stellarml.models.DTLModel`.
DTL_MODEL_TAG = "asdf://stellarml.org/stellarml/tags/dtl_model-1.0.0"
#: Tag written for `~stellarml.models.RemapModel`.
REMAP_MODEL_TAG = "asdf://stellarml.org/stellarml/tags/remap_model-1.1.0"
#: Tag written for `~stellarml.models.RemapEnsemble`.
REMAP_ENSEMBLE_TAG = "asdf://stellarml.org/stellarml/tags/remap_ensemble-1.1.0"
#: Tag written for the `~stellarml.calibration.LabelCalibration` forms.
LABEL_CALIBRATION_TAG = "asdf://stellarml.org/stellarml/tags/label_calibration-1.0.0"
#: Tag written for `~stellarml.labels.LabelSpec`.
LABEL_SPEC_TAG = "asdf://stellarml.org/stellarml/tags/label_spec-1.0.0"
#: Tag written for `~stellarml.spectra.prepare.PreparationSettings`.
PREPARATION_SETTINGS_TAG = "asdf://stellarml.org/stellarml/tags/preparation_settings-1.0.0"

#: Converters of trained models (what `stellarml.io.asdf.model_io` reads and writes).
MODEL_CONVERTERS = [
    RemapModelConverter(),
    RemapEnsembleConverter(),
    DTLModelConverter(),
    EmulatorModelConverter(),
]

#: Converter instances shared by every manifest version.
CONVERTERS = [
    *MODEL_CONVERTERS,
    LabelCalibrationConverter(),
    LabelSpecConverter(),
    PreparationSettingsConverter(),
]

#: One extension per manifest; the newest first (asdf writes with the first
#: extension that supports a type).
STELLARML_EXTENSIONS = [
    ManifestExtension.from_uri(uri, converters=CONVERTERS)
    for uri in (MANIFEST_URI, *OLDER_MANIFEST_URIS, DTL_MANIFEST_URI, PHDL_MANIFEST_URI)
]
