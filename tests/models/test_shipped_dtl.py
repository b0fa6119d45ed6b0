"""The shipped DTL model dtl-optical-r2000: what it is, and that it labels spectra."""

import numpy as np

from stellarml import derive_labels, read_model
from stellarml.data import available_models, example_spectra
from stellarml.flags import FATAL
from stellarml.models import DTLModel


def test_shipped_dtl_model_reads_and_labels_the_examples():
    assert "dtl-optical-r2000" in available_models()
    model = read_model("dtl-optical-r2000")
    assert isinstance(model, DTLModel) and model.is_adapted()
    assert model.label_names == ("teff", "logg", "fe_h")
    assert model.n_pix_ == model.preparation.wavelength.size == 2037
    assert not model.__dict__.get("_net_cache")  # networks are built on first use
    # adapted without labels on the MILES training spectra
    adapt = model.provenance_["adapt"]
    assert adapt["labels_used"] is False and adapt["n_spectra"] > 600
    assert "fine_tune" not in model.provenance_
    assert sum(len(m["regressors"]) for m in model.members_) == 6
    spectra, truth = example_spectra()
    table = derive_labels(spectra, model=model)
    assert ((np.asarray(table["flags"]) & int(FATAL)) == 0).all()
    assert table.meta["model_name"] == "dtl-optical-r2000" and table.meta["adapted"] is True
    for name in ("teff", "logg", "fe_h"):
        lo, mid, hi = (np.asarray(table[c]) for c in (f"{name}_p16", name, f"{name}_p84"))
        assert np.all(lo <= mid) and np.all(mid <= hi) and np.any(hi > lo)
    # synthetic spectra of the library's own emulator, after adaptation to MILES: near their
    # labels, with the offsets benchmarks/RESULTS.md section 14 measures on real stars
    dteff = np.asarray(table["teff"]) - np.asarray(truth["teff"].value)
    assert np.median(np.abs(dteff)) < 400.0
