"""Gaps and masks: pixels without data never get weight, coverage counts only covered pixels."""

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import InverseVariance
from specutils import Spectrum

from stellarml.flags import LabelFlag
from stellarml.spectra import PreparationSettings, log_lambda_grid, prepare, resample_flux
from stellarml.spectra.resample import GAP_FACTOR, MIN_COVERAGE, _input_bins

GRID = log_lambda_grid(3800.0, 7000.0, 3e-4)
SETTINGS = PreparationSettings(wavelength=GRID * u.AA, resolution=1500.0, continuum_width=100.0)


def _coverage(lo, hi, pieces):
    """Fraction of [lo, hi] covered by the union of disjoint intervals ``pieces``."""
    return sum(max(0.0, min(hi, b) - max(lo, a)) for a, b in pieces) / (hi - lo)


def test_gap_interior_gets_no_weight_and_edges_follow_the_coverage_rule():
    wave = np.delete(np.arange(100.0), np.arange(40, 60))  # pixels 40..59 missing
    flux = np.full(wave.size, 2.0)
    ivar = np.ones(wave.size)
    edges, real = _input_bins(wave)
    assert real is not None and (~real).sum() == 1
    np.testing.assert_allclose(edges[1:][~real], [59.5])  # the gap's bin: 39.5-59.5
    np.testing.assert_allclose(edges[:-1][~real], [39.5])
    out = np.arange(30.0, 70.0, 0.4)  # bins of 0.4 that straddle the gap edges in every way
    f, iv = resample_flux(wave, flux, ivar, out)
    pieces = [(-0.5, 39.5), (59.5, 99.5)]
    cov = np.array([_coverage(c - 0.2, c + 0.2, pieces) for c in out])
    has = cov >= MIN_COVERAGE - 1e-9
    assert 0 < has.sum() < out.size and np.any((cov > 0) & ~has)
    assert np.array_equal(iv > 0, has)
    assert np.all(f[~has] == 0)
    assert (~has).sum() >= 48  # the whole 20-pixel gap interior
    np.testing.assert_allclose(f[has], 2.0, rtol=1e-13)


def test_masked_pixels_and_missing_pixels_are_the_same_thing():
    wave = np.arange(100.0)
    flux = np.sin(wave / 5.0) + 3.0
    mask = (wave >= 40) & (wave < 60)
    out = np.arange(20.25, 80.0, 1.7)
    f_mask, iv_mask = resample_flux(wave, flux, np.ones(100), out, mask=mask)
    f_gap, iv_gap = resample_flux(wave[~mask], flux[~mask], np.ones(80), out)
    np.testing.assert_allclose(iv_gap, iv_mask, rtol=1e-12)
    np.testing.assert_allclose(f_gap, f_mask, rtol=1e-12)
    assert np.all(iv_gap[(out > 41) & (out < 58)] == 0)


def test_gap_definition():
    assert GAP_FACTOR == 1.5
    # one missing pixel on a regular grid is a gap; 20 % jitter is not
    assert _input_bins(np.delete(np.arange(30.0), 12))[1] is not None
    rng = np.random.default_rng(3)
    assert _input_bins(np.cumsum(rng.uniform(0.8, 1.2, 500)))[1] is None
    # an isolated pixel between two gaps keeps a bin of the regular step
    edges, real = _input_bins(np.array([0.0, 1, 2, 3, 10, 20, 21, 22, 23]))
    expected = [-0.5, 0.5, 1.5, 2.5, 3.5, 9.5, 10.5, 19.5, 20.5, 21.5, 22.5, 23.5]
    np.testing.assert_allclose(edges, expected)
    assert real.tolist() == [True] * 4 + [False, True, False] + [True] * 4


def test_real_chip_gaps_of_apogee_get_no_weight(data_dir):
    import stellarml.io  # noqa: F401

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = Spectrum.read(data_dir / "sdss" / "apVisit-r13-5095-55844-128.fits")
    wave = spec.spectral_axis.to_value(u.AA)
    order = np.argsort(wave)  # stellarml's APOGEE reader already gives increasing wavelengths
    wave = wave[order]
    flux = spec.flux.value[order]
    ivar = spec.uncertainty.represent_as(InverseVariance).array[order]
    steps = np.diff(wave)
    gaps = np.flatnonzero(steps > 10 * np.median(steps))
    assert gaps.size == 2  # the three detectors
    out = log_lambda_grid(15200.0, 16900.0, 1e-4)
    mask = None if spec.mask is None else spec.mask[order]
    _, iv = resample_flux(wave, flux, ivar, out, mask=mask)
    for k in gaps:
        inside = (out > wave[k] + steps[k - 1]) & (out < wave[k + 1] - steps[k + 1])
        assert inside.sum() > 10
        assert np.all(iv[inside] == 0), "a chip gap got weight"


def _lamost(data_dir, name="3703110.fits"):
    from stellarml.io.lamost import read_lamost

    return read_lamost(data_dir / "lamost" / name)


def _cut(spec, lo, hi):
    """The spectrum with the pixels in [lo, hi] Angstrom removed from its grid."""
    wave = spec.spectral_axis.to_value(u.AA)
    keep = (wave < lo) | (wave > hi)
    return Spectrum(
        flux=spec.flux[keep],
        spectral_axis=spec.spectral_axis[keep],
        uncertainty=InverseVariance(spec.uncertainty.array[keep], unit=spec.uncertainty.unit),
        mask=None if spec.mask is None else spec.mask[keep],
        meta=dict(spec.meta),
    )


def test_lamost_with_a_cut_out_region(data_dir):
    spec = _lamost(data_dir)
    lo, hi = 5000.0, 5600.0
    out = prepare([spec, _cut(spec, lo, hi)], SETTINGS, rv=0.0)
    assert out.flags[1] == out.flags[0] | int(LabelFlag.MANY_MASKED_PIXELS)
    assert not out.flags[1] & int(LabelFlag.TOO_FEW_GOOD_PIXELS | LabelFlag.NO_WAVELENGTH_OVERLAP)
    # model pixels wholly inside the cut (plus the LSF kernel's reach) have no weight
    sig = GRID / 1500.0 / 2.3548 * 4
    inside = (GRID - sig > lo + 2) & (GRID + sig < hi - 2)
    assert inside.sum() > 200
    assert np.all(out.ivar[1][inside] == 0) and np.all(out.flux[1][inside] == 0)
    assert np.all(out.ivar[0][inside] > 0)
    frac_cut = ((GRID > lo) & (GRID < hi)).mean()
    good0, good1 = (out.ivar[0] > 0).mean(), (out.ivar[1] > 0).mean()
    assert good0 - good1 == pytest.approx(frac_cut, abs=0.01)
    # the continuum copes with the zero-weight stretch, but next to it the smoothing is
    # one-sided: measured here, the normalised flux of the cut spectrum differs from the
    # uncut one by up to 8 % within 300 Angstrom (3 continuum sigmas) of the cut, by up to
    # 7 % in the blue (the clipping changes with the rms), by < 0.1 % redward of the cut
    both = (out.ivar[0] > 0) & (out.ivar[1] > 0)
    diff = np.abs(out.flux[1] - out.flux[0])
    assert np.all(np.isfinite(out.flux[1]))
    assert np.max(diff[both & (GRID > hi + 300)]) < 1e-3
    assert np.median(diff[both]) < 2e-3 and np.max(diff[both]) < 0.1


def test_coverage_is_honest_for_big_gaps_and_masks(data_dir):
    spec = _lamost(data_dir)
    wave = spec.spectral_axis.to_value(u.AA)
    # a gap over 60 % of the model grid: 40 % covered -> NO_WAVELENGTH_OVERLAP
    lo, hi = GRID[int(0.2 * GRID.size)], GRID[int(0.8 * GRID.size)]
    half = _cut(spec, lo, hi)
    # the same pixels masked instead: the grid is covered but 60 % of it has no data
    mask = (wave >= lo) & (wave <= hi)
    masked = Spectrum(
        flux=spec.flux,
        spectral_axis=spec.spectral_axis,
        uncertainty=spec.uncertainty,
        mask=mask if spec.mask is None else (spec.mask | mask),
        meta=dict(spec.meta),
    )
    # a smaller gap (30 %) leaves the spectrum usable
    lo3, hi3 = GRID[int(0.35 * GRID.size)], GRID[int(0.65 * GRID.size)]
    out = prepare([half, masked, _cut(spec, lo3, hi3)], SETTINGS, rv=0.0)
    assert out.flags[0] & int(LabelFlag.NO_WAVELENGTH_OVERLAP)
    assert "covers 40% of the model grid" in out.messages[0]
    assert out.flags[1] & int(LabelFlag.TOO_FEW_GOOD_PIXELS)
    assert "only 40% of the model grid has good pixels" in out.messages[1]
    assert np.all(out.ivar[:2] == 0)
    assert not out.flags[2] & int(LabelFlag.NO_WAVELENGTH_OVERLAP | LabelFlag.TOO_FEW_GOOD_PIXELS)
    assert (out.ivar[2] > 0).mean() == pytest.approx(0.70, abs=0.01)


def test_many_masked_pixels_fires_at_the_documented_fraction():
    from stellarml.spectra import prepare_arrays
    from stellarml.spectra.prepare import MAX_MASKED_FRACTION

    assert MAX_MASKED_FRACTION == 0.002  # benchmarks/mask_shift.py, benchmarks/RESULTS.md
    settings = PreparationSettings(wavelength=GRID * u.AA)  # no LSF: input pixel = grid pixel
    npix = GRID.size
    flux = 1.0 - 0.3 * np.exp(
        -0.5 * ((GRID[None, :] - np.linspace(4000, 6800, 40)[:, None]) / 2) ** 2
    )
    flux = np.repeat(flux.prod(axis=0)[None, :], 4, axis=0)
    at_limit = int(np.floor(MAX_MASKED_FRACTION * npix))
    mask = np.zeros((4, npix), dtype=bool)
    rng = np.random.default_rng(5)
    for row, k in enumerate((0, at_limit, at_limit + 1, 100)):
        mask[row, rng.choice(np.arange(10, npix - 10), k, replace=False)] = True
    out = prepare_arrays(GRID, flux, np.full(flux.shape, 1e4), settings, mask=mask)
    masked = (out.ivar == 0).mean(axis=1)
    np.testing.assert_allclose(masked, mask.mean(axis=1))
    many = (out.flags & int(LabelFlag.MANY_MASKED_PIXELS)) != 0
    assert many.tolist() == [False, False, True, True]
    assert not np.any(out.flags & int(LabelFlag.TOO_FEW_GOOD_PIXELS))
    # a spectrum that covers only part of the grid has the rest "masked" too
    part = prepare_arrays(GRID[:-10], flux[:1, :-10], np.full((1, npix - 10), 1e4), settings)
    assert part.flags[0] & int(LabelFlag.MANY_MASKED_PIXELS)
