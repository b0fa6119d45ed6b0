"""A numpy-only stellarml model with its own ASDF converter: the LabelModel contract, tested.

`FakeModel` implements `stellarml.models.LabelModel` directly (not through
`LabelModelBase`): Teff and log g are linear in the mean flux and the mean
squared line depth of the prepared spectrum, with Gaussian posteriors whose
widths follow the S/N, a chi-square diagnostic and a flag of its own
(``OUTSIDE_TRAINING_DOMAIN`` when the spectrum is nearly featureless). It
serialises through `FakeModelConverter`, a subclass of stellarml's shared
`LabelModelConverter`, registered by `fake_extension`.
"""

import contextlib

import asdf
import astropy.units as u
import numpy as np
from asdf.extension import Extension, TagDefinition

from stellarml.flags import FATAL, LabelFlag
from stellarml.io.asdf.converters import LabelModelConverter
from stellarml.labels import get_label
from stellarml.posterior import GaussianPosterior
from stellarml.spectra import PreparationSettings, log_lambda_grid

FAKE_TAG = "asdf://stellarml.org/stellarml-tests/tags/fake_model-1.0.0"


class FakeModel:
    """Labels from two flux statistics; numpy only."""

    method = "fake"

    def __init__(self, coefficients, *, name="fake", preparation=None):
        self.name = name
        self.coefficients = np.asarray(coefficients, dtype=float)  # (2 labels, 3)
        self.label_specs = (get_label("teff"), get_label("logg"))
        if preparation is None:
            grid = log_lambda_grid(4800.0, 5400.0, 3.0e-4)
            preparation = PreparationSettings(wavelength=grid * u.AA, resolution=1500.0)
        self.preparation = preparation
        self.provenance_ = {"made_by": "tests/fake_model.py"}
        self.calibration = None
        self.source_ = None

    def predict_posterior(self, batch, *, device="auto", batch_size=1024):
        flux, ivar = np.asarray(batch.flux, float), np.asarray(batch.ivar, float)
        good = ivar > 0
        n_good = np.maximum(good.sum(axis=1), 1)
        mean = np.where(good, flux, 0).sum(axis=1) / n_good
        depth2 = np.where(good, (1 - flux) ** 2, 0).sum(axis=1) / n_good
        design = np.column_stack([np.ones(len(flux)), mean, depth2])
        labels = design @ self.coefficients.T
        snr = np.where(np.isfinite(batch.snr), batch.snr, 10.0)
        sigma = np.column_stack([2000.0 / snr, 20.0 / snr])
        fatal = (np.asarray(batch.flags) & int(FATAL)) != 0
        flags = np.where(depth2 < 1e-4, int(LabelFlag.OUTSIDE_TRAINING_DOMAIN), 0)
        chi2 = np.where(good, ivar * (flux - 1) ** 2, 0).sum(axis=1)
        return GaussianPosterior(
            labels,
            sigma**2,
            ["teff", "logg"],
            flags=flags,
            diagnostics={"chi2": chi2, "crlb": {"teff": sigma[:, 0] / 2}},
            valid=~fatal,
        )

    def describe(self):
        return {"name": self.name, "class": "FakeModel", "coefficients": self.coefficients.tolist()}

    def table_meta(self):
        return {"model_name": self.name, "model_method": self.method}


class FakeModelConverter(LabelModelConverter):
    tags = (FAKE_TAG,)
    types = (FakeModel,)

    def method_node(self, obj, tag, ctx):
        return {"coefficients": obj.coefficients}

    def build_model(self, node, label_names, tag, ctx):
        assert label_names == ["teff", "logg"]
        return FakeModel(node["coefficients"], name=node["name"], preparation=node["preparation"])


class FakeExtension(Extension):
    extension_uri = "asdf://stellarml.org/stellarml-tests/extensions/fake-1.0.0"
    tags = (TagDefinition(FAKE_TAG),)
    converters = (FakeModelConverter(),)


@contextlib.contextmanager
def fake_extension():
    """asdf knows FakeModel inside the block."""
    with asdf.config_context() as config:
        config.add_extension(FakeExtension())
        yield


def fake_model():
    """A FakeModel with fixed coefficients (Teff 4000-7000 K, log g 1-5 for typical spectra)."""
    return FakeModel([[9000.0, -1000.0, -80000.0], [-5.0, 9.0, 30.0]])
