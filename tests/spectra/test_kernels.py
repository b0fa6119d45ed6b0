"""Rotation, macroturbulence and variable-R instrumental broadening; instrument masks."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import InverseVariance, StdDevUncertainty
from scipy.integrate import quad
from specutils import Spectrum, SpectrumList

from stellarml.libraries.augment import add_noise_from_error
from stellarml.spectra import (
    C_KMS,
    apply_mask,
    error_from_spectrum,
    gaussian_broaden,
    instrumental_broaden,
    log_lambda_grid,
    macroturbulence_broaden,
    macroturbulence_kernel,
    mask_from_spectrum,
    rotational_broaden,
    rotational_kernel,
    transfer_mask,
    vacuum_to_air,
)
from stellarml.spectra.broadening import FWHM_TO_SIGMA
from stellarml.spectra.kernels import macroturbulence_cdf, rotational_cdf


def _line(wave, centre=5050.0, sigma=0.05, depth=0.6):
    return 1.0 - depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def _velocity_moments(wave, flux, centre):
    """Centroid and variance [km/s, (km/s)^2] of the absorption 1 - flux in velocity."""
    v = C_KMS * np.log(wave / centre)
    depth = 1.0 - flux
    w = depth / depth.sum()
    mu = (w * v).sum()
    return mu, (w * (v - mu) ** 2).sum()


def _ew(wave, flux):
    return float(np.sum((1.0 - flux) * np.gradient(wave)))


# ---------------------------------------------------------------------- kernels
@pytest.mark.parametrize("epsilon", [0.0, 0.6, 1.0])
def test_rotational_kernel_is_normalised_and_matches_its_cdf(epsilon):
    vsini = 40.0
    total, _ = quad(rotational_kernel, -vsini, vsini, args=(vsini, epsilon))
    assert total == pytest.approx(1.0, abs=1e-9)
    assert rotational_kernel(np.array([-41.0, 40.0, 55.0]), vsini, epsilon).tolist() == [0, 0, 0]
    for v in (-30.0, -5.0, 12.0, 39.0):
        part, _ = quad(rotational_kernel, -vsini, v, args=(vsini, epsilon))
        assert float(rotational_cdf(v, vsini, epsilon)) == pytest.approx(part, abs=1e-9)
    # limb darkening concentrates the profile: the centre is higher for larger epsilon
    centre = float(rotational_kernel(0.0, vsini, epsilon))
    assert centre == pytest.approx(
        (2 * (1 - epsilon) + np.pi * epsilon / 2) / (np.pi * vsini * (1 - epsilon / 3))
    )


def test_rotational_kernel_width_scales_with_vsini():
    def second_moment(vsini):
        m2, _ = quad(lambda v: v * v * rotational_kernel(v, vsini, 0.6), -vsini, vsini)
        return m2

    assert second_moment(40.0) / second_moment(10.0) == pytest.approx(16.0, rel=1e-9)
    # and Gray's profile for epsilon=0 is a half ellipse: <x^2> = 1/4
    m2_eps0, _ = quad(lambda x: x * x * rotational_kernel(x, 1.0, 0.0), -1, 1)
    assert m2_eps0 == pytest.approx(0.25, rel=1e-9)


def test_macroturbulence_kernel_is_grays_disk_integral():
    zeta = 6.0
    for v in (0.5, 3.0, 9.0, 20.0):
        # Gray (2005) radial-tangential profile, A_R = A_T = 1/2, zeta_R = zeta_T
        radial, _ = quad(
            lambda th, v=v: np.exp(-((v / (zeta * np.cos(th))) ** 2)) * np.sin(th), 0, np.pi / 2
        )
        tangential, _ = quad(
            lambda th, v=v: np.exp(-((v / (zeta * np.sin(th))) ** 2)) * np.cos(th), 0, np.pi / 2
        )
        gray = (radial + tangential) / (np.sqrt(np.pi) * zeta)
        assert float(macroturbulence_kernel(v, zeta)) == pytest.approx(gray, rel=1e-7)
    total, _ = quad(macroturbulence_kernel, -80, 80, args=(zeta,), points=[0.0], limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)
    part, _ = quad(macroturbulence_kernel, -80, 4.0, args=(zeta,), points=[0.0], limit=200)
    assert float(macroturbulence_cdf(4.0, zeta)) == pytest.approx(part, abs=1e-8)
    # symmetric, and the kernel is given per km/s: a Quantity in m/s works
    assert float(macroturbulence_kernel(-3.0, zeta)) == float(macroturbulence_kernel(3.0, zeta))
    assert float(macroturbulence_kernel(3000 * u.m / u.s, zeta * u.km / u.s)) == pytest.approx(
        float(macroturbulence_kernel(3.0, zeta))
    )


def test_kernel_arguments_are_checked():
    with pytest.raises(ValueError, match="vsini must be positive"):
        rotational_kernel(0.0, 0.0)
    with pytest.raises(ValueError, match="epsilon must be in"):
        rotational_kernel(0.0, 10.0, 1.5)
    with pytest.raises(ValueError, match="vmacro must be positive"):
        macroturbulence_kernel(0.0, -1.0)
    with pytest.raises(u.UnitsError, match="expected a velocity"):
        rotational_kernel(1.0 * u.AA, 10.0)


# ---------------------------------------------------------------------- broadening
def test_rotational_broadening_physics_on_a_log_grid():
    wave = log_lambda_grid(5000.0, 5100.0, 2e-6)  # 0.6 km/s pixels
    flux = _line(wave)
    _, var0 = _velocity_moments(wave, flux, 5050.0)
    variances = []
    for vsini in (10.0, 20.0, 40.0):
        out = rotational_broaden(wave, flux, vsini, epsilon=0.6)
        assert _ew(wave, out) == pytest.approx(_ew(wave, flux), rel=1e-6)
        mu, var = _velocity_moments(wave, out, 5050.0)
        assert abs(mu) < 0.05
        variances.append(var - var0)  # variances of convolved profiles add
    m2, _ = quad(lambda v: v * v * rotational_kernel(v, 1.0, 0.6), -1, 1)
    np.testing.assert_allclose(variances, m2 * np.array([10.0, 20.0, 40.0]) ** 2, rtol=2e-3)
    # a rotation below a pixel width and vsini = 0 leave the spectrum unchanged
    np.testing.assert_allclose(rotational_broaden(wave, flux, 0.25), flux, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(rotational_broaden(wave, flux, 0.0), flux)


def test_macroturbulence_broadening_conserves_ew_and_adds_its_variance():
    wave = log_lambda_grid(5000.0, 5100.0, 2e-6)
    flux = _line(wave)
    out = macroturbulence_broaden(wave, flux, 5.0 * u.km / u.s)
    assert _ew(wave, out) == pytest.approx(_ew(wave, flux), rel=1e-6)
    _, var0 = _velocity_moments(wave, flux, 5050.0)
    _, var = _velocity_moments(wave, out, 5050.0)
    m2, _ = quad(lambda v: v * v * macroturbulence_kernel(v, 5.0), -60, 60, points=[0.0])
    assert var - var0 == pytest.approx(m2, rel=5e-3)
    # its core is sharper than a Gaussian of the same variance: deeper line centre
    gauss = gaussian_broaden(wave, flux, fwhm_out=np.sqrt(m2) / C_KMS * 5050.0 / FWHM_TO_SIGMA)
    assert out.min() < gauss.min()


def test_batch_with_one_velocity_per_spectrum_equals_single_calls():
    wave = log_lambda_grid(6000.0, 6060.0, 1e-5)
    rng = np.random.default_rng(1)
    flux = _line(wave, 6030.0, 0.1)[None, :] * (1 + 0.01 * rng.standard_normal((4, wave.size)))
    vsini = np.array([0.0, 8.0, 35.0, 120.0])
    batch = rotational_broaden(wave, flux.astype(np.float32), vsini)
    assert batch.dtype == np.float32 and batch.shape == flux.shape
    for i, v in enumerate(vsini):
        np.testing.assert_allclose(batch[i], rotational_broaden(wave, flux[i], v), rtol=1e-6)
    with pytest.raises(ValueError, match="one per spectrum"):
        rotational_broaden(wave, flux, [1.0, 2.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        rotational_broaden(wave, flux, -5.0)


def test_non_log_grid_gives_the_same_result_as_a_log_grid():
    log_wave = log_lambda_grid(5000.0, 5100.0, 1e-6)
    lin_wave = np.linspace(5000.0, 5100.0, 20001)
    for broaden, arg in ((rotational_broaden, 30.0), (macroturbulence_broaden, 4.0)):
        a = broaden(log_wave, _line(log_wave, sigma=0.2), arg)
        b = broaden(lin_wave, _line(lin_wave, sigma=0.2), arg)
        inner = slice(300, -300)
        np.testing.assert_allclose(np.interp(lin_wave, log_wave, a)[inner], b[inner], atol=1e-4)


def test_ivar_propagation_and_bad_pixels():
    wave = log_lambda_grid(5000.0, 5020.0, 1e-5)
    npix = wave.size
    rng = np.random.default_rng(3)
    sigma = 0.05
    noise = rng.normal(0.0, sigma, (4000, npix))
    out, ivar = rotational_broaden(wave, noise, 25.0, ivar=np.full((4000, npix), sigma**-2))
    # the propagated variance is the Monte-Carlo variance of the broadened noise
    inner = slice(50, -50)
    np.testing.assert_allclose(
        out[:, inner].var(axis=0).mean() * ivar[0, inner].mean(), 1, atol=0.05
    )
    # one weight per pixel: sum_k w_k^2 sigma^2
    dv = C_KMS * 1e-5
    k = np.arange(-10, 11)
    w = rotational_cdf((k + 0.5) * dv, 25.0) - rotational_cdf((k - 0.5) * dv, 25.0)
    np.testing.assert_allclose(ivar[0, inner], 1 / (sigma**2 * np.sum(w**2)), rtol=1e-9)
    # a bad pixel and a long bad stretch: no NaN leaks, the stretch is emptied
    flux = _line(wave, 5010.0, 0.1)
    flux_bad = flux.copy()
    flux_bad[300] = np.nan
    iv = np.ones(npix)
    iv[600:700] = 0.0
    f, i = rotational_broaden(wave, flux_bad, 25.0, ivar=iv)
    assert np.all(np.isfinite(f))
    assert np.all(i[620:680] == 0) and np.all(f[620:680] == 0)
    assert i[300] > 0 and abs(f[300] - rotational_broaden(wave, flux, 25.0)[300]) < 1e-3
    # without ivar an emptied pixel is NaN
    g = rotational_broaden(wave, np.where(iv > 0, flux, np.nan), 25.0)
    assert np.all(np.isnan(g[620:680])) and np.all(np.isfinite(g[:550]))


def test_instrumental_broadening_with_wavelength_dependent_resolution():
    wave = log_lambda_grid(5000.0, 7000.0, 2e-5)
    flux = np.ones(wave.size)
    centres = (5200.0, 6800.0)
    for c in centres:
        flux[np.argmin(np.abs(wave - c))] = 0.0

    def resolution(lam):
        return 2000.0 * lam / 5000.0  # R grows with wavelength

    out = instrumental_broaden(wave * u.AA, flux, resolution=resolution)
    np.testing.assert_array_equal(
        out, gaussian_broaden(wave, flux, resolution_out=resolution(wave))
    )
    for c in centres:
        win = np.abs(wave - c) < 20
        depth = 1 - out[win]
        mu = (depth * wave[win]).sum() / depth.sum()
        sig = np.sqrt((depth * (wave[win] - mu) ** 2).sum() / depth.sum())
        # lambda / R(lambda) is constant here: the same FWHM of 2.5 A at both lines
        assert sig == pytest.approx(2.5 * FWHM_TO_SIGMA, rel=0.01)
    assert _ew(wave, out) == pytest.approx(_ew(wave, flux), rel=1e-6)
    # a FWHM callable returning a Quantity, from an input LSF given as a constant R
    out2 = instrumental_broaden(
        wave, flux, fwhm=lambda lam: (lam / 2000.0) * u.AA, resolution_in=20000.0
    )
    assert out2.shape == flux.shape
    with pytest.raises(ValueError, match="one value per pixel"):
        instrumental_broaden(wave, flux, resolution=lambda lam: np.ones(3))
    with pytest.raises(ValueError, match="cannot be sharpened"):
        instrumental_broaden(wave, flux, resolution=1000.0, resolution_in=lambda lam: 500.0)


# ---------------------------------------------------------------------- masks and errors
def test_transfer_mask_by_overlap_gaps_and_coverage():
    src = np.arange(5000.0, 5100.0, 1.0)  # 1 A pixels
    bad = np.zeros(src.size, bool)
    bad[[20, 21, 60]] = True
    # the same grid: the same mask, plus nothing else
    np.testing.assert_array_equal(transfer_mask(src, bad, src), bad)
    # a coarser grid (3 A): every target bin overlapping a bad source bin is masked
    target = np.arange(4990.5, 5110.0, 3.0)
    out = transfer_mask(src, bad, target)
    edges = np.concatenate([[target[0] - 1.5], target + 1.5])
    for j in range(target.size):
        lo, hi = edges[j], edges[j + 1]
        overlap_bad = np.any(bad & (src + 0.5 > lo) & (src - 0.5 < hi))
        outside = lo < src[0] - 0.5 or hi > src[-1] + 0.5
        assert out[j] == (overlap_bad or outside), j
    assert not transfer_mask(src, bad, target, outside=False)[[0, -1]].any()
    # a gap between two CCDs is masked
    gapped = np.concatenate([src[:50], src[50:] + 30.0])
    out = transfer_mask(gapped, np.zeros(gapped.size, bool), np.arange(5000.0, 5129.0, 1.0))
    assert out[52:78].all() and not out[5:48].any() and not out[82:125].any()
    with pytest.raises(ValueError, match="source_mask has shape"):
        transfer_mask(src, bad[:5], target)


def test_apogee_pixel_mask_on_a_coarser_grid(data_dir):
    wave = np.load(data_dir / "apogee" / "apogee_wavelength.npz")["wavelength"]
    mask = np.load(data_dir / "apogee" / "apogee_mask.npz")["apogee_mask"]
    target = log_lambda_grid(wave[0], wave[-1], 2.5e-5)  # ~half the APOGEE pixels
    out = transfer_mask(wave, mask, target)
    edges = np.concatenate([[0], 0.5 * (target[1:] + target[:-1]), [np.inf]])
    # every bad APOGEE pixel centre lies in a masked target pixel
    idx = np.searchsorted(edges, wave[mask]) - 1
    assert out[idx[(idx >= 0) & (idx < target.size)]].all()
    assert mask.mean() < out.mean() < 3 * mask.mean()


def test_lamost_mask_and_error_spectrum(data_dir):
    # this LAMOST spectrum has a bad stretch (zero inverse variance) at 8768-8776 A
    spec = Spectrum.read(data_dir / "lamost" / "3712166.fits")
    wave = spec.spectral_axis.to_value(u.AA)
    bad = spec.mask | (spec.uncertainty.array <= 0)
    assert bad.sum() == 5
    grid = log_lambda_grid(3800.0, 9000.0, 1e-4)
    mask = mask_from_spectrum(spec, grid)
    idx = np.searchsorted(0.5 * (grid[1:] + grid[:-1]), wave[bad])
    assert mask[idx].all()
    # 5 LAMOST pixels of d(ln lambda) = 2.3e-4 cover ~12 target pixels; nothing else is masked
    assert 11 <= mask.sum() <= 14
    assert np.all((grid[mask] > 8760) & (grid[mask] < 8785))
    # air grid: the spectrum's vacuum wavelengths are converted first
    air = vacuum_to_air(grid)
    np.testing.assert_array_equal(mask_from_spectrum(spec, air, medium="air"), mask)
    beyond = log_lambda_grid(8800.0, 9300.0, 1e-4)
    assert mask_from_spectrum(spec, beyond)[-20:].all()  # past 9099 A: no coverage
    # the error spectrum relative to the median flux, then used for noise
    err = error_from_spectrum(spec, grid)
    good = ~bad
    sig = 1 / np.sqrt(spec.uncertainty.array[good]) / np.median(spec.flux.value[good])
    assert np.all(np.isinf(err[mask]))
    assert np.median(err[~mask]) == pytest.approx(np.median(sig), rel=0.1)
    flux = np.full((400, grid.size), 2.0)
    noisy, ivar = add_noise_from_error(flux, err, relative=True, seed=0)
    assert np.all(ivar[:, mask] == 0) and np.all(noisy[:, mask] == 2.0)
    ratio = noisy[:, ~mask].std(axis=0) / (2.0 * err[~mask])
    assert ratio.mean() == pytest.approx(1.0, abs=0.01) and np.all(np.abs(ratio - 1) < 0.25)
    np.testing.assert_allclose(ivar[0, ~mask], 1 / (2.0 * err[~mask]) ** 2, rtol=1e-5)


def test_mask_of_a_spectrum_list_is_the_union_of_coverage():
    a = np.arange(5000.0, 5050.0, 0.5)
    b = np.arange(5040.0, 5100.0, 0.5)
    fa = np.ones(a.size) * u.Jy
    fb = np.ones(b.size) * u.Jy
    ua = np.ones(a.size)
    ua[10:14] = 0  # zero inverse variance = bad
    sa = Spectrum(flux=fa, spectral_axis=a * u.AA, uncertainty=InverseVariance(ua / u.Jy**2))
    sb = Spectrum(flux=fb, spectral_axis=b * u.AA, uncertainty=StdDevUncertainty(np.ones(b.size)))
    target = np.arange(5001.0, 5099.0, 1.0)
    both = mask_from_spectrum(SpectrumList([sa, sb]), target)
    assert both[4:6].all() and not both[8:].any() and not both[:3].any()
    assert mask_from_spectrum(sb, target)[:38].all()
    with pytest.raises(TypeError, match="Spectrum or SpectrumList"):
        mask_from_spectrum(np.ones(3), target)
    with pytest.raises(ValueError, match="no uncertainty"):
        error_from_spectrum(Spectrum(flux=fa, spectral_axis=a * u.AA), target)


def test_apply_mask_and_error_noise_checks():
    flux = np.ones((2, 5), dtype=np.float32)
    ivar = np.full((2, 5), 4.0, dtype=np.float32)
    mask = np.array([False, True, False, False, True])
    f, i = apply_mask(flux, ivar, mask, fill=0.0)
    assert f.dtype == np.float32 and i.dtype == np.float32
    np.testing.assert_array_equal(i[:, mask], 0)
    np.testing.assert_array_equal(f[:, mask], 0)
    np.testing.assert_array_equal(i[:, ~mask], 4)
    with pytest.raises(ValueError, match="needs ivar"):
        apply_mask(flux, None, mask)
    with pytest.raises(ValueError, match="mask shape"):
        apply_mask(flux, ivar, mask[:3])
    # an absolute error spectrum with an existing ivar adds in quadrature
    _, iv = add_noise_from_error(flux, np.full(5, 0.5), ivar=ivar, seed=1)
    np.testing.assert_allclose(iv, 1 / (0.25 + 0.25))
    with pytest.raises(ValueError, match="error must have shape"):
        add_noise_from_error(flux, np.ones(4))
    with pytest.raises(ValueError, match=">= 0"):
        add_noise_from_error(flux, -np.ones(5))
