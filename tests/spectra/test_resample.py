"""Tests of flux-conserving resampling and the InverseVarianceResampler."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import (
    InverseVariance,
    StdDevUncertainty,
    UnknownUncertainty,
    VarianceUncertainty,
)
from specutils import Spectrum
from specutils.manipulation import FluxConservingResampler

from stellarml.spectra import InverseVarianceResampler, resample_flux
from stellarml.spectra.resample import OPERATOR_CACHE


def test_resample_identity_and_downsampling():
    wave = np.arange(100.0)
    flux = np.sin(wave / 7.0) + 2.0
    ivar = np.full(100, 4.0)
    f, iv = resample_flux(wave, flux, ivar, wave)
    np.testing.assert_allclose(f, flux, rtol=1e-13)
    np.testing.assert_allclose(iv, ivar, rtol=1e-13)
    # pairs of pixels: averages, inverse variances add up
    out = np.arange(0.5, 99.0, 2.0)
    f, iv = resample_flux(wave, flux, ivar, out)
    np.testing.assert_allclose(f, 0.5 * (flux[0::2] + flux[1::2]), rtol=1e-13)
    np.testing.assert_allclose(iv, 8.0, rtol=1e-13)


def test_resample_conserves_flux_on_irregular_grids():
    rng = np.random.default_rng(1)
    # steps vary by +-20 % (well below GAP_FACTOR: no step is a gap)
    wave = np.cumsum(rng.uniform(0.8, 1.2, 300)) + 4000.0
    flux = rng.uniform(0.0, 2.0, (3, 300))
    out = np.linspace(wave[3], wave[-4], 77)
    f, iv = resample_flux(wave, flux, None, out)
    edges_in = np.concatenate([[1.5 * wave[0] - 0.5 * wave[1]], 0.5 * (wave[1:] + wave[:-1])])
    edges_in = np.append(edges_in, 1.5 * wave[-1] - 0.5 * wave[-2])
    edges_out = np.concatenate([[1.5 * out[0] - 0.5 * out[1]], 0.5 * (out[1:] + out[:-1])])
    edges_out = np.append(edges_out, 1.5 * out[-1] - 0.5 * out[-2])
    # integral over the output range, computed from the input step function
    cum = np.concatenate([np.zeros((3, 1)), np.cumsum(flux * np.diff(edges_in), axis=1)], axis=1)
    integral = np.array([np.interp(edges_out[[0, -1]], edges_in, c) for c in cum])
    np.testing.assert_allclose(
        (f * np.diff(edges_out)).sum(axis=1), integral[:, 1] - integral[:, 0], rtol=1e-12
    )
    assert np.all(iv > 0)


def test_resample_variance_matches_monte_carlo():
    rng = np.random.default_rng(2)
    wave = np.linspace(5000.0, 5100.0, 400)
    sigma = np.linspace(0.5, 2.0, 400)
    draws = rng.normal(0.0, 1.0, (5000, 400)) * sigma
    out = np.linspace(5001.0, 5099.0, 157)  # non-integer ratio of pixel sizes
    f, iv = resample_flux(wave, draws, np.broadcast_to(sigma**-2, draws.shape), out)
    ratio = f.var(axis=0) * iv[0]
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(ratio, 1.0, atol=0.1)


def test_resample_masks_coverage_and_range():
    wave = np.arange(20.0)
    flux = np.arange(20.0)
    ivar = np.ones(20)
    mask = np.zeros(20, bool)
    mask[5] = True
    ivar[9] = 0.0
    flux[13] = np.nan
    out = np.arange(-1.5, 21.0, 2.0)  # bins of two input pixels, two beyond the ends
    f, iv = resample_flux(wave, flux, ivar, out, mask=mask)
    # out of range -> 0, 0
    np.testing.assert_array_equal(iv[[0, -1]], 0.0)
    np.testing.assert_array_equal(f[[0, -1]], 0.0)
    # one of two input pixels bad (mask, ivar 0, NaN flux) -> the other one
    for centre, value in ((4.5, 4.0), (8.5, 8.0), (12.5, 12.0)):
        j = np.flatnonzero(out == centre)[0]
        assert f[j] == value and iv[j] == 1.0
    j = np.flatnonzero(out == 16.5)[0]
    assert f[j] == 16.5 and iv[j] == 2.0
    # less than half of a bin's weight on good pixels -> empty
    f2, iv2 = resample_flux(np.arange(10.0), np.ones(10), None, [4.0, 6.0], mask=np.arange(10) > 3)
    assert f2[0] == 0.0 and iv2[0] == 0.0


def test_resample_batch_shapes_and_errors():
    wave = np.arange(10.0)
    flux = np.arange(30.0).reshape(3, 10)
    out = np.array([2.5, 5.5])
    f, iv = resample_flux(wave, flux, None, out)
    assert f.shape == iv.shape == (3, 2)
    # per-spectrum input grids
    grids = np.stack([wave, wave + 0.5, wave])
    f2, _ = resample_flux(grids, flux, None, out)
    np.testing.assert_allclose(f2[[0, 2]], f[[0, 2]])
    np.testing.assert_allclose(f2[1], resample_flux(wave + 0.5, flux[1], None, out)[0])
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_flux(wave[::-1], flux, None, out)
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_flux(np.r_[wave[:5], wave[4:9]], flux, None, out)
    with pytest.raises(ValueError, match="pixels per spectrum"):
        resample_flux(wave, flux[:, :5], None, out)
    with pytest.raises(ValueError, match="ivar has shape"):
        resample_flux(wave, flux, np.ones(5), out)
    with pytest.raises(ValueError, match="at least 2"):
        resample_flux(wave, flux, None, out[:1])
    with pytest.raises(ValueError, match="rows"):
        resample_flux(grids[:2], flux, None, out)


def test_operator_is_cached():
    wave = np.linspace(1.0, 2.0, 50)
    out = np.linspace(1.1, 1.9, 13)
    resample_flux(wave, np.ones(50), None, out)
    hits = OPERATOR_CACHE.hits
    resample_flux(wave, np.ones((4, 50)), None, out)
    assert OPERATOR_CACHE.hits == hits + 1


def _spectrum(uncertainty=None, mask=None, nrow=None):
    rng = np.random.default_rng(5)
    wave = np.linspace(4000.0, 4100.0, 201)
    shape = (201,) if nrow is None else (nrow, 201)
    flux = 1.0 + 0.1 * rng.normal(size=shape)
    sigma = 0.1 + 0.05 * rng.uniform(size=shape)
    unc = {
        None: None,
        "std": StdDevUncertainty(sigma),
        "var": VarianceUncertainty(sigma**2),
        "ivar": InverseVariance(sigma**-2),
        "std_mJy": StdDevUncertainty(sigma * 1000, unit=u.mJy),
    }[uncertainty]
    return Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA, uncertainty=unc, mask=mask)


def test_resampler_agrees_with_specutils_flux_conserving():
    spec = _spectrum("std")
    new = np.linspace(4002.0, 4098.0, 70) * u.AA
    ours = InverseVarianceResampler()(spec, new)
    ref = FluxConservingResampler()(spec, new)
    np.testing.assert_allclose(ours.flux.value, ref.flux.value, rtol=1e-12)
    np.testing.assert_allclose(ours.uncertainty.array, ref.uncertainty.array, rtol=1e-10)
    assert isinstance(ours.uncertainty, InverseVariance)
    assert ours.uncertainty.unit == u.Jy**-2 and ours.flux.unit == u.Jy
    assert not ours.mask.any()


def test_resampler_handles_2d_without_uncertainty_where_specutils_fails():
    spec = _spectrum(None, nrow=4)
    new = np.linspace(4002.0, 4098.0, 70) * u.AA
    with pytest.raises(TypeError):
        FluxConservingResampler()(spec, new)  # specutils indexes a None uncertainty
    out = InverseVarianceResampler()(spec, new)
    assert out.flux.shape == (4, 70) and out.uncertainty is None
    row = InverseVarianceResampler()(
        Spectrum(flux=spec.flux[2], spectral_axis=spec.spectral_axis), new
    )
    np.testing.assert_allclose(out.flux[2].value, row.flux.value)
    # bins beyond the input are masked and zero (or NaN, or dropped)
    wide = np.linspace(3990.0, 4110.0, 13) * u.AA
    z = InverseVarianceResampler()(spec, wide)
    assert z.mask[:, 0].all() and (z.flux[:, 0] == 0).all() and not z.mask[:, 6].any()
    nan = InverseVarianceResampler("nan_fill")(spec, wide)
    assert np.isnan(nan.flux[:, 0]).all()
    cut = InverseVarianceResampler("truncate")(spec, wide)
    assert cut.flux.shape == (4, 9) and cut.spectral_axis[0] == 4010 * u.AA


def test_resampler_uncertainty_classes_and_masks():
    new = np.linspace(4002.0, 4098.0, 70) * u.AA
    results = [
        InverseVarianceResampler()(_spectrum(kind, nrow=3), new)
        for kind in ("std", "var", "ivar", "std_mJy")
    ]
    for res in results[1:]:
        np.testing.assert_allclose(res.flux.value, results[0].flux.value, rtol=1e-12)
        np.testing.assert_allclose(res.uncertainty.array, results[0].uncertainty.array, rtol=1e-10)
    mask = np.zeros((3, 201), bool)
    mask[1, 90:110] = True
    spec = _spectrum("std", mask=mask, nrow=3)
    masked = InverseVarianceResampler()(spec, new)
    np.testing.assert_allclose(masked.flux[[0, 2]].value, results[0].flux[[0, 2]].value)
    edges = np.concatenate(
        [
            [1.5 * new.value[0] - 0.5 * new.value[1]],
            0.5 * (new.value[1:] + new.value[:-1]),
            [1.5 * new.value[-1] - 0.5 * new.value[-2]],
        ]
    )
    inside = np.clip(np.minimum(edges[1:], 4054.75) - np.maximum(edges[:-1], 4044.75), 0, None)
    in_hole = inside / np.diff(edges) > 0.5
    assert in_hole.sum() == 7
    assert masked.mask[1, in_hole].all() and not masked.mask[1, ~in_hole].any()
    assert (masked.uncertainty.array[1, in_hole] == 0).all()
    with pytest.raises(TypeError, match="UnknownUncertainty"):
        InverseVarianceResampler()(
            Spectrum(
                flux=spec.flux,
                spectral_axis=spec.spectral_axis,
                uncertainty=UnknownUncertainty(np.ones((3, 201))),
            ),
            new,
        )


def test_resampler_axis_directions_and_units():
    spec = _spectrum("std")
    new = np.linspace(4002.0, 4098.0, 70) * u.AA
    ref = InverseVarianceResampler()(spec, new)
    rev = Spectrum(
        flux=spec.flux[::-1],
        spectral_axis=spec.spectral_axis[::-1],
        uncertainty=StdDevUncertainty(spec.uncertainty.array[::-1]),
    )
    np.testing.assert_allclose(InverseVarianceResampler()(rev, new).flux, ref.flux)
    down = InverseVarianceResampler()(spec, new[::-1])
    np.testing.assert_allclose(down.flux.value, ref.flux.value[::-1])
    in_nm = InverseVarianceResampler()(spec, new.to(u.nm))
    np.testing.assert_allclose(in_nm.flux.value, ref.flux.value, rtol=1e-12)
    assert in_nm.spectral_axis.unit == u.nm
    with pytest.raises(u.UnitsError, match="cannot be converted"):
        InverseVarianceResampler()(spec, [1.0, 2.0] * u.km / u.s)
