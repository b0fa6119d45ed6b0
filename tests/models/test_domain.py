"""Out-of-domain and not-a-star checks: the helpers and the shipped model's flags."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import InverseVariance
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml.data import example_spectra
from stellarml.flags import FATAL, LabelFlag
from stellarml.models.domain import line_statistics, out_of_fold_threshold_scale


def test_out_of_fold_threshold_scale():
    ratio = np.concatenate([np.linspace(0.0, 1.3, 100), [np.nan]])
    assert out_of_fold_threshold_scale(ratio, 0.99) == pytest.approx(np.quantile(ratio[:-1], 0.99))
    assert out_of_fold_threshold_scale(np.full(10, 0.5)) == 1.0  # never shrinks
    with pytest.raises(ValueError, match="quantile must be in"):
        out_of_fold_threshold_scale(ratio, 0.0)
    with pytest.raises(ValueError, match="no finite out-of-fold"):
        out_of_fold_threshold_scale([np.nan])


def test_line_statistics_separate_lines_from_noise():
    rng = np.random.default_rng(3)
    x = np.arange(2000)
    noise = 0.02 * rng.standard_normal((3, x.size))
    flat = 1.0 + noise[0]
    lines = 1.0 + noise[1]
    for c in rng.uniform(10, 1990, 120):  # absorption lines 2 pixels wide, 10-40 % deep
        lines -= rng.uniform(0.1, 0.4) * np.exp(-0.5 * ((x - c) / 2.0) ** 2)
    emission = 1.0 + noise[2]
    for c in range(100, 2000, 250):  # eight emission lines, 5 times the continuum
        emission += 5.0 * np.exp(-0.5 * ((x - c) / 3.0) ** 2)
    ivar = np.full((3, x.size), 0.02**-2)
    ivar[1, :500] = 0.0  # masked pixels are left out
    stats = line_statistics(np.stack([flat, lines, emission]), ivar)
    contrast, rms = stats["line_contrast"], stats["line_rms"]
    assert 0.9 < contrast[0] < 1.05  # noise only
    assert contrast[1] > 2.0 and 0.03 < rms[1] < 0.2
    assert rms[2] > 0.3
    empty = line_statistics(np.ones((1, 50)), np.zeros((1, 50)))
    assert np.isnan(empty["line_rms"][0]) and np.isnan(empty["line_contrast"][0])


@pytest.fixture(scope="module")
def model():
    return read_model("remap-optical-r2000")


def test_shipped_thresholds_come_from_out_of_fold_distances(model):
    for member in model.members:
        record = member.provenance_["domain"]
        assert record["threshold_scale"] == pytest.approx(1.1406, abs=1e-3)
        assert member.domain_threshold_ == pytest.approx(
            record["in_sample_threshold"] * record["threshold_scale"], rel=1e-12
        )
        assert record["cv_false_alarm_rate"] <= 0.02
        assert "benchmarks/domain_kfold.py" in record["command"]


def _spectra(flux, ivar):
    wave = np.exp(np.arange(np.log(3650.0), np.log(7400.0), 1e-4 * np.log(10)))
    flux = np.asarray(flux(wave))
    return Spectrum(
        flux=flux * u.dimensionless_unscaled,
        spectral_axis=wave * u.AA,
        uncertainty=InverseVariance(np.broadcast_to(ivar, flux.shape).copy()),
        meta={"medium": "vacuum", "resolution": 2000.0},
    )


def test_non_stellar_inputs_get_masked_labels(model):
    rng = np.random.default_rng(5)

    def flat(w):
        return 3.0 + 0.03 * rng.standard_normal((2, w.size))

    def power_law(w):
        return (w / 5500.0) ** -2.0 * (1 + 0.01 * rng.standard_normal(w.size))

    def quasar_like(w):  # a power law with Balmer and [O III] emission lines
        out = (w / 5500.0) ** -1.0
        for center, height in ((4862.7, 3.0), (5008.2, 8.0), (6564.6, 10.0)):
            out = out + height * np.exp(-0.5 * ((w - center) / 3.0) ** 2)
        return out * (1 + 0.01 * rng.standard_normal(w.size))

    for make, ivar in ((flat, 0.03**-2), (power_law, 1e4), (quasar_like, 1e4)):
        table = derive_labels(_spectra(make, ivar), model=model, device="cpu")
        flags = np.atleast_1d(np.asarray(table["flags"]))
        assert np.all(flags & int(LabelFlag.NOT_A_STAR)), (make.__name__, flags)
        assert np.all(flags & int(FATAL))
        assert np.all(np.ma.getmaskarray(table["teff"])) and np.all(
            np.ma.getmaskarray(table["fe_h"])
        )
        assert "NOT_A_STAR" in table["flag_names"][0]


def test_demo_stars_are_not_called_non_stellar(model):
    spectra, _ = example_spectra()
    table = derive_labels(spectra, model=model, device="cpu")
    flags = np.asarray(table["flags"])
    assert not np.any(flags & int(LabelFlag.NOT_A_STAR))
    # two of the eight (the metal-poor giant and the K/M dwarf) stay outside the domain
    assert int(np.sum((flags & int(LabelFlag.OUTSIDE_TRAINING_DOMAIN)) != 0)) == 2
    assert np.all(np.isfinite(np.asarray(table["teff"])))
