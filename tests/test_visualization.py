"""Tests of stellarml.visualization: the figures hold the numbers they claim."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import StdDevUncertainty
from astropy.table import QTable
from astropy.utils.masked import Masked

matplotlib = pytest.importorskip("matplotlib", reason="stellarml.visualization needs matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from specutils import Spectrum  # noqa: E402

from stellarml.flags import LabelFlag  # noqa: E402
from stellarml.posterior import BinnedPosterior, GaussianPosterior, SamplePosterior  # noqa: E402
from stellarml.visualization import (  # noqa: E402
    plot_corner,
    plot_kiel,
    plot_label_comparison,
    plot_latent_projection,
    plot_posterior,
    plot_spectrum_fit,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_label_comparison_statistics():
    rng = np.random.default_rng(1)
    ref = QTable(
        {"teff": rng.uniform(4000, 6500, 200) * u.K, "logg": rng.uniform(1, 5, 200) * u.dex}
    )
    derived = QTable(
        {
            "teff": ref["teff"] + (30 + rng.normal(0, 80, 200)) * u.K,
            "teff_err_lo": np.full(200, 80.0) * u.K,
            "teff_err_hi": np.full(200, 90.0) * u.K,
            "logg": Masked(ref["logg"] - 0.05 * u.dex, mask=np.arange(200) < 10),
        }
    )
    _fig, axes, stats = plot_label_comparison(derived, ref)
    assert axes.shape == (2, 2)
    assert stats["teff"]["n"] == 200
    assert stats["teff"]["bias"] == pytest.approx(30, abs=15)
    assert stats["teff"]["sigma"] == pytest.approx(80, rel=0.2)
    # masked rows are left out and counted
    assert stats["logg"]["n"] == 190
    assert stats["logg"]["bias"] == pytest.approx(-0.05, abs=1e-9)
    assert "10 not shown" in axes[0, 1].get_title()


def test_label_comparison_converts_units_and_checks_rows():
    ref = {"teff": np.array([5.0, 6.0]) * u.kK}
    _, _, stats = plot_label_comparison({"teff": np.array([5010.0, 6010.0]) * u.K}, ref)
    assert stats["teff"]["bias"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="row-matched"):
        plot_label_comparison({"teff": np.ones(3)}, {"teff": np.ones(2)})
    with pytest.raises(ValueError, match="share none"):
        plot_label_comparison({"x": np.ones(3)}, {"y": np.ones(3)})


def _binned():
    centers = np.arange(4000, 7000, 50.0) + 25
    pdf = np.exp(-0.5 * ((centers - 5515) / 100) ** 2)
    pdf = np.vstack([pdf / pdf.sum(), np.ones_like(pdf) / pdf.size])
    return BinnedPosterior({"teff": pdf}, {"teff": (4000.0, 7000.0, 50.0)})


def test_posterior_of_each_form():
    _, axes = plot_posterior(_binned(), 0)
    (line,) = axes[0].get_lines()[:1]
    x, y = line.get_data()
    assert x[np.argmax(y)] == pytest.approx(5525.0)
    assert np.sum(y) * 50 == pytest.approx(1.0)  # a density
    rng = np.random.default_rng(0)
    samples = SamplePosterior(rng.normal([5000, 4.0], [50, 0.1], (2, 500, 2)), ("teff", "logg"))
    _, axes = plot_posterior(samples, 1)
    assert len(axes) == 2
    gauss = GaussianPosterior(
        np.array([[5000.0, 4.4]]), np.diag([100.0**2, 0.2**2])[None], ("teff", "logg")
    )
    _fig, axes = plot_posterior(gauss, 0, labels=["logg"])
    x, y = axes[0].get_lines()[0].get_data()
    assert x[np.argmax(y)] == pytest.approx(4.4, abs=0.01)


def test_posterior_of_calibrated_bins():
    # a calibration maps each row's bins: shift by +100 K and stretch by 1.1
    post = _binned().transformed("teff", shift=np.array([100.0, 0.0]), scale=1.1, center=5000.0)
    _, axes = plot_posterior(post, 0)
    x, y = axes[0].get_lines()[0].get_data()
    assert x[np.argmax(y)] == pytest.approx(5000 + 1.1 * (5525 - 5000) + 100)
    assert np.sum(y) * 1.1 * 50 == pytest.approx(1.0)


def test_posterior_refuses_invalid_rows():
    post = _binned().with_flags(np.array([0, int(LabelFlag.BAD_INPUT)]))
    post = post.select(np.array([0, 1]))
    bad = BinnedPosterior(
        {"teff": post.pdf("teff")}, {"teff": (4000.0, 7000.0, 50.0)}, valid=np.array([True, False])
    )
    with pytest.raises(ValueError, match="row 1 has no valid posterior"):
        plot_posterior(bad, 1)
    with pytest.raises(IndexError, match="integer index into 2"):
        plot_posterior(bad, 5)


def test_corner_from_samples_and_binned():
    rng = np.random.default_rng(2)
    cov = np.array([[100.0**2, 0.9 * 100 * 0.2], [0.9 * 100 * 0.2, 0.2**2]])
    draws = rng.multivariate_normal([5000, 4.0], cov, size=(1, 3000))
    _, axes = plot_corner(SamplePosterior(draws, ("teff", "logg")))
    assert axes.shape == (2, 2)
    assert not axes[0, 1].get_visible()
    assert axes[1, 0].get_xlabel().startswith(r"$T_\mathrm{eff}$")
    _fig, axes = plot_corner(_binned(), 0, n_samples=500)
    assert axes.shape == (1, 1)


def test_spectrum_fit_chi2():
    wave = np.linspace(5000, 5100, 300) * u.AA
    model = 1 - 0.5 * np.exp(-0.5 * ((wave.value - 5050) / 2) ** 2)
    rng = np.random.default_rng(3)
    sigma = np.full(300, 0.01)
    flux = model + rng.normal(0, 0.01, 300)
    mask = np.zeros(300, bool)
    mask[:20] = True
    spec = Spectrum(
        spectral_axis=wave,
        flux=flux * u.one,
        uncertainty=StdDevUncertainty(sigma),
        mask=mask,
    )
    _fig, _axes, chi2 = plot_spectrum_fit(spec, model)
    expected = np.mean(((flux - model) / sigma)[~mask] ** 2)
    assert chi2 == pytest.approx(expected)
    assert 0.7 < chi2 < 1.3
    with pytest.raises(ValueError, match="shape"):
        plot_spectrum_fit(spec, model[:-1])
    other = Spectrum(spectral_axis=wave + 1 * u.AA, flux=model * u.one)
    with pytest.raises(ValueError, match="spectral axis"):
        plot_spectrum_fit(spec, other)


def test_kiel_counts_and_orientation():
    table = QTable(
        {
            "teff": Masked([5800.0, 4500.0, 6100.0, 5000.0] * u.K, mask=[0, 0, 0, 1]),
            "logg": np.array([4.4, 2.5, 4.1, 3.0]) * u.dex,
            "fe_h": np.array([0.0, -0.5, 0.2, 0.1]) * u.dex,
            "flags": np.array([0, int(LabelFlag.LOW_SNR), int(LabelFlag.BAD_INPUT), 0], np.int32),
        }
    )
    ax, counts = plot_kiel(table)
    assert counts == {"clean": 1, "warning": 1, "not_shown": 2}
    assert ax.xaxis_inverted() and ax.yaxis_inverted()
    ax, counts = plot_kiel(table, color=None, show_flagged=False)
    assert counts == {"clean": 1, "warning": 1, "not_shown": 3}


def test_latent_projection():
    rng = np.random.default_rng(4)
    ax = plot_latent_projection(
        {"synthetic": rng.normal(size=(50, 2)), "observed": rng.normal(size=(7, 2))}
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["synthetic (50)", "observed (7)"]
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot_latent_projection({"x": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="empty"):
        plot_latent_projection({})
