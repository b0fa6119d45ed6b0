"""Tests of SpectralLibrary: validation, indexing, noise, augmentation, splits."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import InverseVariance
from astropy.table import MaskedColumn, QTable, Table
from specutils import Spectrum

from stellarml.libraries import SpectralLibrary
from stellarml.spectra import C_KMS


def _library(n=40, npix=500, seed=0, ivar=False):
    """n spectra of one Gaussian absorption line on a log grid, labels spread in teff."""
    rng = np.random.default_rng(seed)
    wave = np.exp(np.linspace(np.log(6500), np.log(6620), npix))
    depth = rng.uniform(0.2, 0.6, n)
    flux = 1 - depth[:, None] * np.exp(-0.5 * ((wave - 6562.8) / 1.0) ** 2)
    labels = QTable(
        {
            "fe_h": rng.uniform(-1, 0.3, n) * u.dex,
            "teff": np.linspace(4000, 7000, n) * u.K,
            "id": [f"{i:04d}" for i in range(n)],
        }
    )
    return SpectralLibrary(
        labels,
        wave * u.AA,
        flux,
        np.full_like(flux, 1e4) if ivar else None,
        resolution=20000,
        meta={"name": "toy"},
    )


def test_construction_converts_units_and_orders_labels():
    labels = QTable({"fe_h": [0.1] * u.dex, "teff": [5.5] * u.kK, "note": ["x"]})
    lib = SpectralLibrary(labels, [0.5, 0.6, 0.7] * u.um, np.ones((1, 3)))
    assert lib.label_names == ["teff", "fe_h"]
    assert lib.labels["teff"].unit == u.K and lib.labels["teff"][0].value == 5500.0
    assert np.allclose(lib.wavelength.to_value(u.AA), [5000, 6000, 7000])
    assert np.array_equal(lib.label_array(), [[5500.0, 0.1]])
    assert np.array_equal(lib.label_array(["fe_h"]), [[0.1]])
    assert list(lib.labels["note"]) == ["x"]
    with pytest.raises(KeyError, match="logg"):
        lib.label_array(["logg"])
    assert "1 spectra x 3 px" in repr(lib) and "unbroadened" in repr(lib)


def test_from_arrays_assigns_registry_units():
    lib = SpectralLibrary.from_arrays(
        np.array([[5000.0, 4.5], [6000.0, 4.0]]),
        np.linspace(5000, 5010, 11),
        np.ones((2, 11), dtype=np.float32),
        label_names=["teff", "logg"],
        medium="air",
        fwhm=2.5 * u.AA,
    )
    assert lib.labels["logg"].unit == u.dex and lib.labels["teff"].unit == u.K
    assert lib.wavelength.unit == u.AA and lib.flux.dtype == np.float32
    assert lib.medium == "air" and lib.fwhm == 2.5 * u.AA
    table = Table({"teff": [5000.0], "logg": [4.0]})
    assert len(SpectralLibrary.from_arrays(table, np.arange(3.0) + 5000, np.ones((1, 3)))) == 1
    with pytest.raises(TypeError, match="unexpected keyword"):
        SpectralLibrary.from_arrays(table, np.arange(3.0) + 5000, np.ones((1, 3)), colour=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": {"teff": [5000.0, 6000.0]}}, u.UnitsError, "no unit; expected K"),
        ({"labels": {"teff": [5000.0, 6000.0] * u.m}}, u.UnitsError, "not convertible to K"),
        ({"labels": {"teff": [5000.0, np.nan] * u.K}}, ValueError, "non-finite values"),
        ({"labels": {"colour": [1, 2]}}, ValueError, "no known label column"),
        ({"labels": [[1, 2]]}, TypeError, "labels must be"),
        ({"wavelength": np.arange(4.0)}, u.UnitsError, "Quantity with a spectral unit"),
        ({"wavelength": [1, 2, 2, 3] * u.AA}, ValueError, "strictly increasing"),
        ({"wavelength": [4, 3, 2, 1] * u.AA}, ValueError, "must be increasing"),
        ({"wavelength": [1, 2, 3, 4] * u.s}, u.UnitsError, "not a spectral unit"),
        ({"flux": np.ones((3, 4))}, ValueError, r"shape \(3, 4\) does not match 2 label rows"),
        ({"flux": np.ones(4)}, ValueError, "2-D"),
        ({"flux": np.array([[1, 2, np.nan, 4]] * 2)}, ValueError, "row 0"),
        ({"ivar": -np.ones((2, 4))}, ValueError, "ivar must be finite and >= 0"),
        ({"medium": "water"}, ValueError, "medium"),
        ({"resolution": 2000, "fwhm": 1 * u.AA}, ValueError, "not both"),
        ({"resolution": -5}, ValueError, "positive finite R"),
        ({"fwhm": 2.5}, u.UnitsError, "fwhm must be a Quantity"),
        ({"meta": ["x"]}, TypeError, "meta must be a dict"),
    ],
)
def test_validation_errors(kwargs, error, match):
    args = {
        "labels": {"teff": [5000.0, 6000.0] * u.K},
        "wavelength": [5000.0, 5001.0, 5002.0, 5003.0] * u.AA,
        "flux": np.ones((2, 4)),
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        SpectralLibrary(
            args.pop("labels"),
            args.pop("wavelength"),
            args.pop("flux"),
            args.pop("ivar", None),
            **args,
        )


def test_masked_labels_and_bad_pixels_with_zero_ivar():
    wave = [5000.0, 5001.0, 5002.0] * u.AA
    masked = QTable({"teff": MaskedColumn([5000.0, 6000.0], mask=[False, True], unit=u.K)})
    with pytest.raises(ValueError, match="masked"):
        SpectralLibrary(masked, wave, np.ones((2, 3)))
    unmasked = QTable({"teff": MaskedColumn([5000.0, 6000.0], mask=[False, False], unit=u.K)})
    lib = SpectralLibrary(unmasked, wave, np.ones((2, 3)))
    assert not hasattr(lib.labels["teff"], "mask")
    flux = np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]])
    ivar = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert SpectralLibrary(unmasked, wave, flux, ivar).ivar[0, 1] == 0


def test_indexing_returns_libraries():
    lib = _library(ivar=True)
    one = lib[3]
    assert isinstance(one, SpectralLibrary) and len(one) == 1 and one.flux.shape == (1, 500)
    assert one.labels["id"][0] == "0003" and lib[-1].labels["id"][0] == "0039"
    assert list(lib[2:5].labels["id"]) == ["0002", "0003", "0004"]
    mask = lib.labels["teff"] > 6000 * u.K
    hot = lib[np.asarray(mask)]
    assert len(hot) == mask.sum() and np.all(hot.labels["teff"] > 6000 * u.K)
    picked = lib[np.array([5, 1])]
    assert list(picked.labels["id"]) == ["0005", "0001"]
    assert np.array_equal(picked.flux, lib.flux[[5, 1]]) and picked.ivar.shape == (2, 500)
    assert len(lib[np.array([], dtype=int)]) == 0
    assert picked.resolution == 20000 and picked.meta["name"] == "toy"
    with pytest.raises(IndexError, match="out of range"):
        lib[40]
    with pytest.raises(IndexError, match="boolean mask"):
        lib[np.ones(3, dtype=bool)]
    with pytest.raises(IndexError, match="index a library"):
        lib[np.array([0.5])]


def test_to_spectrum_is_a_2d_specutils_batch():
    lib = _library(n=4, ivar=True)
    spec = lib.to_spectrum()
    assert isinstance(spec, Spectrum) and spec.flux.shape == (4, 500)
    assert spec.flux.unit == u.dimensionless_unscaled
    assert isinstance(spec.uncertainty, InverseVariance)
    assert np.array_equal(spec.uncertainty.array, lib.ivar)
    assert u.allclose(spec.spectral_axis, lib.wavelength)
    assert spec.meta["medium"] == "vacuum" and spec.meta["resolution"] == 20000
    assert spec.meta["labels"] is lib.labels
    assert _library(n=2).to_spectrum().uncertainty is None


def test_add_noise_measured_snr_matches_request():
    lib = _library(n=20, npix=4000)
    noisy = lib.add_noise(50.0, seed=3)
    resid = noisy.flux - lib.flux
    measured = np.median(lib.flux, axis=1) / resid.std(axis=1)
    assert np.allclose(measured, 50.0, rtol=0.06)
    assert np.allclose(noisy.ivar, (50.0 / np.median(lib.flux, axis=1))[:, None] ** 2)
    assert np.array_equal(noisy.flux, lib.add_noise(50.0, seed=3).flux)
    assert lib.ivar is None  # the original is untouched
    ranged = lib.add_noise((10, 100), seed=1)
    snr = ranged.meta["noise_snr"]
    assert snr.shape == (20,) and snr.min() >= 10 and snr.max() <= 100
    measured = np.median(lib.flux, axis=1) / (ranged.flux - lib.flux).std(axis=1)
    assert np.allclose(measured, snr, rtol=0.08)


def test_augment_shifts_lines_and_copies_labels():
    lib = _library(n=10, npix=2000, ivar=True)
    aug = lib.augment(rv_jitter=30 * u.km / u.s, n_copies=3, seed=4)
    assert len(aug) == 30 and aug.ivar.shape == (30, 2000)
    assert list(aug.labels["id"][10:13]) == ["0000", "0001", "0002"]
    rv = aug.meta["augmentation"][0]["rv_kms"]
    assert rv.shape == (30,) and 15 < rv.std() < 45
    wave = lib.wavelength.to_value(u.AA)
    depth = 1 - aug.flux
    centres = (depth * wave).sum(axis=1) / depth.sum(axis=1)
    assert np.allclose(centres, 6562.8 * (1 + rv / C_KMS), atol=0.01)
    again = lib.augment(rv_jitter=30, n_copies=3, seed=4)
    assert np.array_equal(again.flux, aug.flux)
    both = lib.augment(rv_jitter=30, continuum_distortion=0.02, n_copies=3, seed=4)
    chunked = lib.augment(rv_jitter=30, continuum_distortion=0.02, n_copies=3, seed=4, chunk_size=7)
    assert np.array_equal(both.flux, chunked.flux) and np.array_equal(both.ivar, chunked.ivar)


def test_augment_continuum_distortion_is_smooth_and_multiplicative():
    lib = _library(n=8, npix=1000, ivar=True)
    aug = lib.augment(continuum_distortion=0.05, seed=1)
    ratio = aug.flux / lib.flux
    assert np.all(ratio > 0) and 0.01 < np.log(ratio).std(axis=1).mean() < 0.1
    assert np.allclose(aug.ivar * ratio**2, lib.ivar)
    assert np.array_equal(lib.augment(seed=1).flux, lib.flux)
    with pytest.raises(ValueError, match="n_copies"):
        lib.augment(n_copies=0)
    with pytest.raises(ValueError, match="rv_jitter"):
        lib.augment(rv_jitter=-1)


def test_split_is_disjoint_complete_and_seeded():
    lib = _library(n=41)
    parts = lib.split((0.7, 0.2, 0.1), seed=2)
    assert [len(p) for p in parts] == [29, 8, 4]
    ids = np.concatenate([np.asarray(p.labels["id"]) for p in parts])
    assert sorted(ids) == sorted(lib.labels["id"])
    again = lib.split((0.7, 0.2, 0.1), seed=2)
    assert all(
        list(a.labels["id"]) == list(b.labels["id"]) for a, b in zip(parts, again, strict=True)
    )
    assert list(lib.split(seed=3)[1].labels["id"]) != list(parts[1].labels["id"])
    with pytest.raises(ValueError, match="sum to 1"):
        lib.split((0.5, 0.4))
    with pytest.raises(ValueError, match="positive"):
        lib.split((1.2, -0.2))


@pytest.mark.parametrize("stratify", [None, "teff"])
def test_kfold_partitions_are_disjoint_and_complete(stratify):
    lib = _library(n=53)
    folds = list(lib.kfold(5, seed=1, stratify=stratify))
    assert len(folds) == 5
    tests = [set(test.labels["id"]) for _, test in folds]
    assert sum(len(t) for t in tests) == 53 and set.union(*tests) == set(lib.labels["id"])
    assert all(len(t) in (10, 11) for t in tests)
    for train, test in folds:
        assert set(train.labels["id"]).isdisjoint(test.labels["id"])
        assert len(train) + len(test) == 53
    if stratify:
        # Every fold spans the whole Teff range: its mean is close to the overall mean.
        means = [test.labels["teff"].value.mean() for _, test in folds]
        assert np.ptp(means) < 300
    again = [set(test.labels["id"]) for _, test in lib.kfold(5, seed=1, stratify=stratify)]
    assert again == tests


def test_kfold_rejects_bad_arguments():
    lib = _library(n=5)
    with pytest.raises(ValueError, match="2 <= k <= 5"):
        next(lib.kfold(6))
    with pytest.raises(ValueError, match="stratify"):
        next(lib.kfold(2, stratify=np.ones(3)))
    folds = list(lib.kfold(2, stratify=np.arange(5.0)))
    assert sorted(len(test) for _, test in folds) == [2, 3]


def _line_sigma(wave, flux):
    """Gaussian sigma [Angstrom] of the absorption line in each row (second moment)."""
    depth = 1 - flux
    centre = (depth * wave).sum(axis=1) / depth.sum(axis=1)
    return np.sqrt((depth * (wave - centre[:, None]) ** 2).sum(axis=1) / depth.sum(axis=1))


def test_degrade_broadens_to_the_target_and_preserves_mean_flux():
    lib = _library(n=6, npix=3000)  # R = 20000, intrinsic line sigma 1.0 Angstrom
    wave = lib.wavelength.to_value(u.AA)
    out = lib.degrade(resolution=2000)
    assert isinstance(out, SpectralLibrary) and out.resolution == 2000 and out.fwhm is None
    # Equivalent widths (mean flux deficit) are conserved by the convolution.
    assert np.allclose(out.flux.mean(axis=1), lib.flux.mean(axis=1), atol=2e-4)
    sigma_r = 6562.8 / np.array([20000.0, 2000.0]) / (2 * np.sqrt(2 * np.log(2)))
    expected = np.sqrt(_line_sigma(wave, lib.flux) ** 2 + sigma_r[1] ** 2 - sigma_r[0] ** 2)
    assert np.allclose(_line_sigma(wave, out.flux), expected, rtol=0.02)
    assert out.meta["degraded"] == [
        {"resolution": 2000.0, "fwhm_angstrom": None, "wavelength": None}
    ]
    with pytest.raises(ValueError, match="cannot be sharpened"):
        lib.degrade(resolution=50000)


def test_degrade_to_fwhm_and_new_grid_with_ivar_in_chunks():
    lib = _library(n=7, npix=3000, ivar=True)
    grid = np.linspace(6520, 6600, 400) * u.AA
    out = lib.degrade(fwhm=4 * u.AA, wavelength=grid, chunk_size=3)
    assert out.flux.shape == (7, 400) and out.ivar.shape == (7, 400)
    assert out.fwhm == 4 * u.AA and out.resolution is None
    assert u.allclose(out.wavelength, grid)
    # Binning 0.2 Angstrom pixels from ~0.013 Angstrom ones averages ~15 pixels of noise.
    assert np.all(out.ivar > 10 * 1e4)
    whole = lib.degrade(fwhm=4 * u.AA, wavelength=grid)
    assert np.allclose(whole.flux, out.flux, rtol=1e-12)
    same_lsf = lib.degrade(wavelength=grid)
    assert same_lsf.resolution == 20000
    with pytest.raises(ValueError, match="reaches outside"):
        lib.degrade(wavelength=np.linspace(6400, 6600, 100) * u.AA)
    with pytest.raises(ValueError, match="needs a target"):
        lib.degrade()


def test_prepare_matches_prepare_arrays_and_is_chunk_independent():
    from stellarml.spectra import PreparationSettings, log_lambda_grid, prepare_arrays

    lib = _library(n=9, npix=3000, ivar=True)
    grid = log_lambda_grid(6510, 6610, 1e-4) * u.AA
    settings = PreparationSettings(wavelength=grid, medium="vacuum", resolution=5000)
    whole = lib.prepare(settings)
    chunked = lib.prepare(settings, chunk_size=4, rv=np.zeros(9))
    direct = prepare_arrays(lib.wavelength, lib.flux, lib.ivar, settings, resolution=20000)
    assert len(chunked) == 9 and chunked.flux.shape == (9, grid.size)
    assert np.array_equal(whole.flux, direct.flux) and np.array_equal(whole.flags, direct.flags)
    assert np.allclose(chunked.flux, whole.flux, atol=1e-6)
    assert np.allclose(chunked.ivar, whole.ivar, rtol=1e-5)
    assert chunked.messages == [""] * 9 and np.all(chunked.flags == 0)


def test_prepare_broadens_an_unbroadened_library():
    from stellarml.spectra import PreparationSettings, log_lambda_grid

    lib = _library(n=3, npix=3000)
    sharp = SpectralLibrary(lib.labels, lib.wavelength, lib.flux)  # no LSF: unbroadened
    grid = log_lambda_grid(6510, 6610, 1e-4) * u.AA
    settings = PreparationSettings(wavelength=grid, resolution=3000)
    batch = sharp.prepare(settings)
    assert not np.any(batch.flags & 128)  # RESOLUTION_ASSUMED
    # Broadened from infinite R here, from R=20000 there: almost the same spectra.
    assert np.abs(batch.flux - lib.prepare(settings).flux).max() < 0.005
    # The line (sigma 1 Angstrom) is convolved with R=3000 (sigma 0.93 Angstrom at H-alpha):
    # its depth drops by the ratio of the widths.
    sigma_r = 6562.8 / 3000 / (2 * np.sqrt(2 * np.log(2)))
    ratio = (1 - batch.flux.min(axis=1)) / (1 - lib.flux.min(axis=1))
    assert np.allclose(ratio, 1 / np.sqrt(1 + sigma_r**2), rtol=0.05)
