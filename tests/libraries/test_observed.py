"""Tests of ObservedLibrary: MILES (real files and small written ones) and from_spectra."""

import csv

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import StdDevUncertainty
from astropy.table import QTable
from specutils import Spectrum

from stellarml.flags import LabelFlag
from stellarml.libraries import ObservedLibrary
from stellarml.spectra import PreparationSettings, log_lambda_grid


@pytest.fixture(scope="module")
def miles(data_dir):
    return ObservedLibrary.from_miles(data_dir / "miles")


@pytest.fixture(scope="module")
def csv_rows(data_dir):
    with open(data_dir / "miles" / "miles_train_labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_real_miles_uses_only_the_training_list(miles, csv_rows):
    assert len(csv_rows) == 669
    complete = [
        r
        for r in csv_rows
        if r["miles_id"].isdigit() and all(r[k] for k in ("teff", "logg", "fe_h"))
    ]
    assert len(miles) == len(complete) == 643
    listed = {r["miles_id"] for r in csv_rows}
    ids = list(miles.labels["id"])
    assert all(len(i) == 4 and i.isdigit() for i in ids)
    assert set(ids) <= listed and len(set(ids)) == len(ids)
    assert ids == [r["miles_id"] for r in complete]  # CSV order
    assert miles.meta["ids"] == ids and miles.meta["n_csv_rows"] == 669
    dropped = miles.meta["dropped"]
    assert len(dropped) == 669 - 643
    assert {"id": "022.", "reason": "malformed miles_id '022.' (CSV line 178)"} in dropped
    assert sum(d["reason"] == "missing fe_h" for d in dropped) == 24
    assert all(d["id"] not in ids for d in dropped)


def test_real_miles_arrays_and_labels(miles, csv_rows):
    assert miles.flux.shape == (643, 4300) and miles.ivar is None
    wave = miles.wavelength.to_value(u.AA)
    assert wave[0] == pytest.approx(3540.5) and wave[-1] == pytest.approx(7409.6)
    assert np.allclose(np.diff(wave), 0.9)
    assert miles.medium == "air" and miles.fwhm == 2.5 * u.AA and miles.resolution is None
    assert miles.label_names == ["teff", "logg", "fe_h"]
    assert miles.labels["teff"].unit == u.K and miles.labels["fe_h"].unit == u.dex
    row = next(r for r in csv_rows if r["miles_id"] == "0272")
    star = miles[np.flatnonzero(miles.labels["id"] == "0272")]
    assert star.label_array()[0] == pytest.approx(
        [float(row["teff"]), float(row["logg"]), float(row["fe_h"])]
    )
    # Relative fluxes around 1, all finite; the spectrum is the file's.
    assert np.all(np.isfinite(miles.flux)) and 0.5 < np.median(miles.flux) < 1.5
    data = fits.getdata(miles.meta["source"] + "/MILES_res2.50_star_m0272V.fits")
    assert np.array_equal(star.flux[0], data)
    assert len(miles.meta["labels_csv_sha256"]) == 64


def test_subsets_stay_observed(miles):
    sub = miles[:5]
    assert isinstance(sub, ObservedLibrary) and len(sub) == 5
    assert sub.fwhm == 2.5 * u.AA and sub.meta["name"] == "MILES"
    folds = list(miles.kfold(3, seed=0, stratify="teff"))
    assert sum(len(test) for _, test in folds) == 643


def test_from_miles_ids_and_require(data_dir):
    lib = ObservedLibrary.from_miles(data_dir / "miles", ids=[1, "272", "0003"])
    assert list(lib.labels["id"]) == ["0272", "0001", "0003"]
    assert lib.flux.shape == (3, 4300)
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        ObservedLibrary.from_miles(data_dir / "miles", ids=["0002"])
    two = ObservedLibrary.from_miles(data_dir / "miles", require=("teff", "logg"), ids=["0838"])
    assert two.label_names == ["teff", "logg"] and len(two) == 1  # fe_h unknown, not needed
    with pytest.raises(ValueError, match="no usable MILES stars"):
        ObservedLibrary.from_miles(data_dir / "miles", ids=["0838"])


def _write_miles(directory, star, flux, crval=3540.5):
    header = fits.Header()
    header["TPLLIB"] = "MILES"
    header["FWHM"] = 2.5
    header["CRPIX1"] = 1
    header["CRVAL1"] = crval
    header["CDELT1"] = 0.9
    fits.PrimaryHDU(np.asarray(flux, dtype=float), header).writeto(
        directory / f"MILES_res2.50_star_m{star}V.fits"
    )


def test_from_miles_never_reads_unlisted_stars(tmp_path):
    _write_miles(tmp_path, "0001", np.full(50, 1.0))
    _write_miles(tmp_path, "0002", np.full(50, 2.0))
    _write_miles(tmp_path, "0005", np.full(50, 5.0))
    # An unlisted star whose file is not even FITS: reading it would fail.
    (tmp_path / "MILES_res2.50_star_m0003V.fits").write_text("reserved star")
    table = tmp_path / "labels.csv"
    table.write_text(
        "miles_id,teff,logg,fe_h\n"
        "0001,5000,4.5,0.0\n"
        "2,6000,4.0,-0.5\n"
        "0004,5500,4.0,-0.2\n"
        "0005,5500,,-0.2\n"
        "0001,5100,4.4,0.1\n"
        "0006,abc,4.0,0.0\n"
        "0007,99999,4.0,0.0\n"
    )
    lib = ObservedLibrary.from_miles(tmp_path, labels_csv=table)
    assert list(lib.labels["id"]) == ["0001", "0002"]
    assert np.array_equal(lib.flux[:, 0], [1.0, 2.0])
    reasons = {d["id"]: d["reason"] for d in lib.meta["dropped"]}
    assert reasons["0004"] == "spectrum file MILES_res2.50_star_m0004V.fits not found"
    assert reasons["0005"] == "missing logg"
    assert reasons["0001"] == "duplicate miles_id (CSV line 6)"
    assert reasons["0006"] == "non-numeric teff 'abc'"
    assert reasons["0007"].startswith("teff 99999 outside the physical range")
    with pytest.raises(FileNotFoundError, match="label list"):
        ObservedLibrary.from_miles(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("star,teff\n0001,5000\n")
    with pytest.raises(ValueError, match="lacks columns"):
        ObservedLibrary.from_miles(tmp_path, labels_csv=bad)


def test_prepare_miles_flags_missing_uncertainty(miles):
    grid = log_lambda_grid(4000, 6800, 3e-4)
    settings = PreparationSettings(wavelength=grid * u.AA, medium="vacuum", resolution=1500)
    batch = miles[:6].prepare(settings)
    assert batch.flux.shape == (6, grid.size)
    assert np.all(batch.flags & LabelFlag.NO_UNCERTAINTY)
    assert not np.any(batch.flags & LabelFlag.RESOLUTION_ASSUMED)
    assert np.all(np.isnan(batch.snr))
    assert 0.9 < np.median(batch.flux) < 1.1


def _spectrum(wave, flux, **kw):
    return Spectrum(flux=flux, spectral_axis=wave, **kw)


def test_from_spectra_stacks_and_converts():
    wave = np.linspace(5000, 5100, 101) * u.AA
    flux = np.ones((2, 101)) * u.Jy
    unc = StdDevUncertainty(np.full((2, 101), 0.1))
    batch = _spectrum(wave, flux, uncertainty=unc, meta={"medium": "air", "resolution": 5000})
    single = _spectrum(
        wave,
        np.full(101, 2000.0) * u.mJy,
        uncertainty=StdDevUncertainty(np.full(101, 100.0)),
        mask=np.arange(101) == 7,
        meta={"medium": "air", "resolution": 5000},
    )
    labels = QTable({"teff": [5000, 5500, 6000] * u.K})
    lib = ObservedLibrary.from_spectra([batch, single], labels)
    assert isinstance(lib, ObservedLibrary) and lib.flux.shape == (3, 101)
    assert np.allclose(lib.flux, [[1.0], [1.0], [2.0]])
    assert np.allclose(lib.ivar[:2], 100.0) and np.allclose(lib.ivar[2, :7], 100.0)
    assert lib.ivar[2, 7] == 0
    assert lib.medium == "air" and lib.resolution == 5000 and lib.meta["flux_unit"] == "Jy"
    # A batch stored with its spectral axis first gives the same rows.
    columns = Spectrum(
        flux=flux.T,
        spectral_axis=wave,
        spectral_axis_index=0,
        uncertainty=StdDevUncertainty(unc.array.T),
        meta=batch.meta,
    )
    same = ObservedLibrary.from_spectra(columns, labels[:2])
    assert np.array_equal(same.flux, lib.flux[:2]) and np.array_equal(same.ivar, lib.ivar[:2])


def test_from_spectra_resamples_other_grids():
    wave = np.linspace(5000, 5100, 201)
    slope = 1 + (wave - 5000) / 1000
    other = np.linspace(4990, 5110, 150)
    labels = QTable({"teff": [5000, 5500] * u.K})
    lib = ObservedLibrary.from_spectra(
        [
            _spectrum(wave * u.AA, slope * u.one),
            _spectrum(other * u.AA, (1 + (other - 5000) / 1000) * u.one),
        ],
        labels,
        fwhm=1 * u.AA,
    )
    assert lib.npix == 201 and np.allclose(lib.flux[1, 2:-2], slope[2:-2], rtol=1e-3)


def test_from_spectra_errors():
    wave = np.linspace(5000, 5100, 11) * u.AA
    labels = QTable({"teff": [5000] * u.K})
    plain = _spectrum(wave, np.ones(11) * u.one)
    with pytest.raises(ValueError, match="line-spread function of the spectra is unknown"):
        ObservedLibrary.from_spectra(plain, labels)
    masked = _spectrum(wave, np.ones(11) * u.one, mask=np.arange(11) == 3)
    with pytest.raises(ValueError, match="masked pixels but no uncertainty"):
        ObservedLibrary.from_spectra(masked, labels, resolution=2000)
    with pytest.raises(ValueError, match="2 label rows for 1 spectra"):
        ObservedLibrary.from_spectra(plain, QTable({"teff": [1, 2] * u.K}), resolution=2000)
    with pytest.raises(ValueError, match="disagree on medium"):
        ObservedLibrary.from_spectra(
            [
                _spectrum(wave, np.ones(11) * u.one, meta={"medium": "air"}),
                _spectrum(wave, np.ones(11) * u.one, meta={"medium": "vacuum"}),
            ],
            QTable({"teff": [1, 2] * u.K}),
            resolution=2000,
        )
    with pytest.raises(TypeError, match="specutils Spectrum"):
        ObservedLibrary.from_spectra(np.ones(11), labels, resolution=2000)
    with pytest.raises(u.UnitsError, match="not convertible"):
        ObservedLibrary.from_spectra(
            [plain, _spectrum(wave, np.ones(11) * u.m)],
            QTable({"teff": [1, 2] * u.K}),
            resolution=2000,
        )
