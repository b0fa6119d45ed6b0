"""The shipped emulator model phdl-optical-r2000: what it is, and that it labels spectra."""

import numpy as np

from stellarml import derive_labels, read_model
from stellarml.data import available_models, example_spectra
from stellarml.flags import FATAL
from stellarml.models.emulator import EmulatorModel, MLPEmulator


def test_shipped_model_reads_and_labels_the_examples():
    assert "phdl-optical-r2000" in available_models()
    model = read_model("phdl-optical-r2000")
    assert isinstance(model, EmulatorModel) and isinstance(model.emulator, MLPEmulator)
    assert model.label_names == ("teff", "logg", "fe_h")
    assert model.emulator.n_pixels == model.preparation.wavelength.size == 2037
    # trained on MILES training stars only, with the GBS calibration of all 55
    prov = model.provenance_
    assert len(prov["training_library"]["ids"]) > 500
    cal = model.calibration.describe()
    assert {c["n"] for c in cal["corrections"].values()} == {55}
    error = model.fit_options["model_error"]
    assert error.shape == (2037,) and np.all(np.isfinite(error)) and np.all(error >= 0)
    spectra, truth = example_spectra()
    table = derive_labels(spectra, model=model)
    ok = (np.asarray(table["flags"]) & int(FATAL)) == 0
    assert ok.all()
    assert table.meta["model_name"] == "phdl-optical-r2000"
    assert {"teff_crlb", "chi2", "dof"} <= set(table.colnames)
    # synthetic spectra of another library: the fit lands near, not on, their labels
    dteff = np.asarray(table["teff"]) - np.asarray(truth["teff"].value)
    assert np.median(np.abs(dteff)) < 250.0
    assert np.all(np.asarray(table["teff_err_hi"]) > 0)
