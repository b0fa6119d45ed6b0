"""Tests of deep ensembles of REMAP models: PDF mixture, checks, fine-tuning, ASDF files."""

from copy import deepcopy

import asdf
import numpy as np
import pytest
import torch
from test_remap import BINS, one_thread, tiny_model, toy_spectra

from stellarml import derive_labels
from stellarml.io.asdf.model_io import ModelFileError, read_model, write_model
from stellarml.models import RemapEnsemble
from stellarml.models.remap import LabelBins, summarize_pdf
from stellarml.spectra import PreparationSettings, log_lambda_grid

NPIX = 64


@pytest.fixture(scope="module")
def members():
    """Two tiny models trained on the same toy spectra with different seeds."""
    flux, _, labels = toy_spectra(600, npix=NPIX, seed=1)
    out = []
    with one_thread():
        for seed in (3, 4):
            model = tiny_model(training={"max_epochs": 6}, seed=seed)
            out.append(model.fit_prepared(flux, None, labels, noiseless=True))
    return out


def copy(model):
    return deepcopy(model)


def test_prediction_is_the_mixture_of_the_member_pdfs(members):
    flux, ivar, _ = toy_spectra(20, npix=NPIX, seed=5, snr=80)
    ens = RemapEnsemble(members)
    got = ens.predict_prepared(flux, ivar)
    parts = [m.predict_prepared(flux, ivar) for m in members]
    for name, (lo, hi, width) in BINS.items():
        mixture = (parts[0]["pdf"][name] + parts[1]["pdf"][name]) / 2
        np.testing.assert_allclose(got["pdf"][name], mixture, rtol=1e-5, atol=1e-7)
        expected = summarize_pdf(torch.from_numpy(mixture), LabelBins(lo, hi, width))
        for key in ("median", "mode", "p16", "p84"):
            np.testing.assert_allclose(
                got["summary"][name][key], expected[key], rtol=1e-5, atol=1e-4 * width
            )
        # the mixture is not the mean of the members' medians
        assert not np.allclose(got["summary"][name]["median"], parts[0]["summary"][name]["median"])
    np.testing.assert_array_equal(got["embedding"], parts[0]["embedding"])
    ratios = [
        p["domain_distance"] / m.domain_threshold_ for p, m in zip(parts, members, strict=True)
    ]
    np.testing.assert_allclose(got["domain_distance"], np.maximum(*ratios), rtol=1e-5)
    assert ens.domain_threshold_ == 1.0


def test_one_member_ensemble_predicts_like_the_member(members):
    flux, ivar, _ = toy_spectra(12, npix=NPIX, seed=6, snr=50)
    one = RemapEnsemble([members[0]]).predict_prepared(flux, ivar)
    ref = members[0].predict_prepared(flux, ivar)
    for name in BINS:
        np.testing.assert_array_equal(
            one["summary"][name]["median"], ref["summary"][name]["median"]
        )
        np.testing.assert_array_equal(one["pdf"][name], ref["pdf"][name])


def test_members_must_agree(members):
    a = members[0]
    with pytest.raises(ValueError, match="at least one member"):
        RemapEnsemble([])
    with pytest.raises(TypeError, match="member 1 is a str"):
        RemapEnsemble([a, "model.asdf"])
    with pytest.raises(RuntimeError, match="not trained"):
        RemapEnsemble([a, tiny_model()])
    other_bins = copy(a)
    other_bins.bins = {**BINS, "teff": (3500.0, 7500.0, 50.0)}
    with pytest.raises(ValueError, match="member 1 has bins"):
        RemapEnsemble([a, other_bins])
    other_labels = copy(a)
    other_labels.labels = ("logg", "teff", "fe_h")
    with pytest.raises(ValueError, match=r"member 1 predicts \['logg', 'teff', 'fe_h'\]"):
        RemapEnsemble([a, other_labels])
    other_grid = copy(a)
    other_grid.preparation = PreparationSettings(
        wavelength=log_lambda_grid(5000.0, 5100.0, 3e-4), resolution=2000.0
    )
    with pytest.raises(ValueError, match="prepares spectra differently"):
        RemapEnsemble([a, other_grid])
    other_loss = copy(a)
    other_loss.loss = {**(other_loss.loss or {}), "variant": "sigmoid"}
    with pytest.raises(ValueError, match="loss variant"):
        RemapEnsemble([a, other_loss])


def test_fine_tune_tunes_every_member_with_its_own_seed(members, tmp_path):
    flux, ivar, labels = toy_spectra(40, npix=NPIX, seed=8, snr=60)
    labels[:, 0] += 120.0
    kw = {"epochs": 2, "lr": 1e-3, "validation_fraction": 0.0, "freeze": "stem"}
    ens = RemapEnsemble([copy(m) for m in members], provenance={"note": "test"})
    ens.fine_tune_prepared(flux, ivar, labels, checkpoint_dir=tmp_path, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member0", "member1"]
    for member, original in zip(ens.members, members, strict=True):
        alone = copy(original).fine_tune_prepared(flux, ivar, labels, **kw)
        for name, value in member.net_.state_dict().items():
            torch.testing.assert_close(value, alone.net_.state_dict()[name])
    assert ens.provenance_["fine_tune"] == ens.members[0].provenance_["fine_tune"]
    assert ens.provenance_["ensemble"]["member_seeds"] == [3, 4]
    assert ens.provenance_["note"] == "test"
    assert len(ens.metrics_["members"]) == 2


def test_asdf_round_trip_and_derive_labels(members, tmp_path):
    # a spectrum-level ensemble: the members need preparation settings
    wave = log_lambda_grid(5000.0, 5200.0, np.log(5200.0 / 5000.0) / (NPIX - 1))
    prep = PreparationSettings(wavelength=wave, resolution=None, continuum_width=400.0)
    withprep = []
    for m in members:
        c = copy(m)
        c.preparation = prep
        withprep.append(c)
    ens = RemapEnsemble(withprep, name="toy-ensemble")
    path = tmp_path / "ens.asdf"
    write_model(ens, path)
    with asdf.open(path) as af:
        raw = path.read_bytes()
        assert b"!<asdf://stellarml.org/stellarml/tags/remap_ensemble-1.1.0>" in raw
        assert raw.count(b"!<asdf://stellarml.org/stellarml/tags/remap_model-1.1.0>") == 2
        assert isinstance(af.tree["model"], RemapEnsemble)
    back = read_model(path)
    assert isinstance(back, RemapEnsemble) and back.name == "toy-ensemble" and len(back) == 2
    assert back.provenance_["ensemble"]["member_seeds"] == [3, 4]
    flux, ivar, _ = toy_spectra(5, npix=NPIX, seed=9, snr=100)
    a = ens.predict_prepared(flux, ivar)["summary"]["teff"]["median"]
    b = back.predict_prepared(flux, ivar)["summary"]["teff"]["median"]
    np.testing.assert_array_equal(a, b)
    import astropy.units as u
    from astropy.nddata import InverseVariance
    from specutils import Spectrum

    spec = Spectrum(
        spectral_axis=wave * u.AA,
        flux=flux * u.dimensionless_unscaled,
        uncertainty=InverseVariance(ivar),
        meta={"resolution": 2000.0},
    )
    table = derive_labels(spec, model=back, device="cpu")
    assert len(table) == 5
    assert table.meta["model_name"] == "toy-ensemble"
    assert table.meta["model_ensemble_members"] == 2
    assert table.meta["model_sha256"] == back.source_["sha256"]


def test_ensemble_file_without_members_is_refused(members, tmp_path):
    path = tmp_path / "ens.asdf"
    write_model(RemapEnsemble(members), path)
    text = path.read_bytes()
    # an ensemble whose 'members' entry is not a list violates the schema
    start = text.index(b"  members:")
    broken = text[:start] + b"  members: 7\n" + b"  membersx:" + text[start + len(b"  members:") :]
    bad = tmp_path / "bad.asdf"
    bad.write_bytes(broken)
    with pytest.raises(ModelFileError, match=r"does not conform to the stellarml schema.*members"):
        read_model(bad)
