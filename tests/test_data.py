"""Shipped files: the default model and the project-made example spectra."""

import astropy.units as u
import numpy as np
import pytest

from stellarml.data import available_models, example_spectra, model_path


def test_available_models():
    assert "remap-optical-r2000" in available_models()
    assert "examples-optical" not in available_models()
    assert "phdl-optical-r2000" in available_models()
    assert "dtl-optical-r2000" in available_models()
    assert model_path("phdl-optical-r2000").stat().st_size < 5e6
    assert model_path("remap-optical-r2000").stat().st_size < 5e6
    assert model_path("dtl-optical-r2000").stat().st_size < 2e7  # two autoencoders


def test_unknown_model_name():
    with pytest.raises(
        KeyError, match="available: dtl-optical-r2000, phdl-optical-r2000, remap-optical-r2000"
    ):
        model_path("nope")
    with pytest.raises(KeyError):
        model_path("examples-optical")


def test_example_spectra():
    spectra, truth = example_spectra()
    assert spectra.flux.shape == (len(truth), spectra.spectral_axis.size)
    assert spectra.spectral_axis.unit == u.AA
    assert spectra.meta["medium"] == "vacuum" and spectra.meta["resolution"] == 2000.0
    assert truth["teff"].unit == u.K and truth["teff"][0] == 5770 * u.K
    assert np.all(spectra.uncertainty.array > 0)
