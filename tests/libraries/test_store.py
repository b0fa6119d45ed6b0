"""The ASDF library store: round trips, lazy memory-mapped reading, streamed writing."""

import tracemalloc

import asdf
import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from stellarml.libraries import ObservedLibrary, SpectralLibrary
from stellarml.libraries.store import (
    LibraryStoreWriter,
    _generic_unit,
    read_library,
    write_library,
)


def _library(n=40, npix=300, *, ivar=True, cls=SpectralLibrary, seed=0):
    rng = np.random.default_rng(seed)
    labels = QTable(
        {
            "teff": rng.uniform(4000, 7000, n) * u.K,
            "logg": rng.uniform(1, 5, n) * u.dex,
            "fe_h": rng.uniform(-2, 0.5, n) * u.dex,
            "id": [f"star{i:03d}" for i in range(n)],
        }
    )
    flux = (1 + 0.1 * rng.standard_normal((n, npix))).astype(np.float32)
    meta = {
        "name": "test library",
        "source": {"file": "grid.fits", "sha256": "0" * 64},
        "degraded": [
            {"resolution": 2000.0, "fwhm_angstrom": None, "wavelength": [4000.0, 5000.0, 300]}
        ],
        "noise_snr": rng.uniform(10, 100, n),
        "pair": (1, 2),
        "lsf": 2.5 * u.AA,
    }
    return cls(
        labels,
        np.geomspace(4000, 5000, npix) * u.AA,
        flux,
        np.full((n, npix), 25.0, dtype=np.float32) if ivar else None,
        medium="air",
        fwhm=2.5 * u.AA,
        meta=meta,
    )


def _memmap_base(array):
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    return base


@pytest.mark.parametrize("lazy", [True, False])
def test_round_trip(tmp_path, lazy):
    lib = _library()
    path = write_library(lib, tmp_path / "lib.asdf")
    back = read_library(path, lazy=lazy)
    assert type(back) is SpectralLibrary
    np.testing.assert_array_equal(back.flux, lib.flux)
    np.testing.assert_array_equal(back.ivar, lib.ivar)
    assert back.flux.dtype == np.float32
    np.testing.assert_array_equal(back.wavelength, lib.wavelength)
    assert back.label_names == ["teff", "logg", "fe_h"]
    np.testing.assert_array_equal(back.label_array(), lib.label_array())
    assert list(back.labels["id"]) == list(lib.labels["id"])
    assert back.labels["teff"].unit == u.K
    assert back.medium == "air" and back.fwhm == 2.5 * u.AA and back.resolution is None
    assert back.meta["name"] == "test library"
    assert back.meta["source"] == {"file": "grid.fits", "sha256": "0" * 64}
    assert back.meta["degraded"] == lib.meta["degraded"]
    assert back.meta["pair"] == [1, 2]  # tuples come back as lists
    assert back.meta["lsf"] == 2.5 * u.AA
    np.testing.assert_array_equal(back.meta["noise_snr"], lib.meta["noise_snr"])
    assert type(back.meta["noise_snr"]) is np.ndarray  # copied out of the file
    assert back.meta["store"]["format_version"] == "1.0.0"
    assert (_memmap_base(back.flux) is not None) == lazy
    # it still works as a library
    assert len(back.degrade(resolution=1000)) == len(lib)


def test_dex_labels_survive_astropys_vounit_side_effect(tmp_path):
    """Reading a VOTable with a quoted 'dex' unit makes VOUnit accept u.dex process-wide."""
    from stellarml.catalog import _forget_shadowing_vounits

    lib = _library(n=3, npix=20)
    u.Unit("'dex'", format="vounit")  # what astropy's VOTable reader does
    try:
        path = write_library(lib, tmp_path / "dex.asdf")
    finally:
        _forget_shadowing_vounits()
    # written with astropy's own unit tag, not as an ambiguous VOUnit
    assert b"<tag:astropy.org:astropy/units/unit-1.0.0> dex" in path.read_bytes()
    back = read_library(path)
    assert back.labels["logg"].unit == u.dex and back.labels["fe_h"].unit == u.dex
    np.testing.assert_array_equal(back.label_array(), lib.label_array())
    # a store with a VOUnit "dex" in it (as written before this was handled) reads right,
    # and reading it leaves astropy's VOUnit state normal
    vounit = tmp_path / "vounit.asdf"
    astropy_tag = b"!<tag:astropy.org:astropy/units/unit-1.0.0> dex"
    vounit_tag = b"!unit/unit-1.0.0 dex".ljust(len(astropy_tag))  # keep the block offsets
    vounit.write_bytes(path.read_bytes().replace(astropy_tag, vounit_tag))
    back = read_library(vounit)
    assert back.labels["logg"].unit == u.dex
    np.testing.assert_array_equal(back.label_array(), lib.label_array())
    with pytest.raises(ValueError, match="not supported by the VOUnit standard"):
        u.dex.to_string("vounit")
    assert _generic_unit(u.PrefixUnit(["dex"], represents=u.Unit(0.1))) == u.dex
    assert _generic_unit(u.km / u.s) == u.km / u.s


def test_subclass_dtype_and_no_ivar(tmp_path):
    lib = _library(ivar=False, cls=ObservedLibrary)
    lib64 = ObservedLibrary(
        lib.labels, lib.wavelength, lib.flux.astype(np.float64), medium="air", meta=lib.meta
    )
    write_library(lib64, tmp_path / "obs.asdf", dtype=np.float32)
    back = read_library(tmp_path / "obs.asdf")
    assert type(back) is ObservedLibrary and back.ivar is None
    assert back.flux.dtype == np.float32
    np.testing.assert_allclose(back.flux, lib64.flux, rtol=1e-7)
    assert (tmp_path / "obs.asdf").stat().st_size < lib64.flux.nbytes


def test_lazy_reading_does_not_load_the_flux(tmp_path):
    lib = _library(n=4000, npix=500, ivar=True)  # 8 MB of flux, 8 MB of ivar
    path = write_library(lib, tmp_path / "big.asdf")
    del lib
    tracemalloc.start()
    try:
        back = read_library(path, lazy=True)
        held, _ = tracemalloc.get_traced_memory()
        part = back[1000:1010]
        np.testing.assert_array_equal(part.flux, back.flux[1000:1010])
        held_after_slice, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert back.flux.nbytes == 8_000_000
    # the arrays are maps of the file, not copies on the Python heap
    assert isinstance(_memmap_base(back.flux), np.memmap)
    assert isinstance(_memmap_base(back.ivar), np.memmap)
    assert held < 1_000_000
    # a slice of a lazy library is a view of the map too
    assert isinstance(_memmap_base(part.flux), np.memmap)
    assert held_after_slice < 1_000_000


def test_streamed_writer(tmp_path):
    labels = QTable({"teff": np.linspace(4000, 6000, 10) * u.K, "logg": np.full(10, 4.5) * u.dex})
    wave = np.linspace(5000, 5100, 50) * u.AA
    path = tmp_path / "stream.asdf"
    with LibraryStoreWriter(path, labels=labels, wavelength=wave, resolution=3000.0) as out:
        out.write(np.ones((6, 50)))
        out.write(2 * np.ones((4, 50)))
    back = read_library(path)
    assert back.resolution == 3000.0 and back.flux.dtype == np.float32
    np.testing.assert_array_equal(back.flux[:, 0], [1] * 6 + [2] * 4)
    assert isinstance(_memmap_base(back.flux), np.memmap)
    # too few rows: an error, and no file
    bad = tmp_path / "short.asdf"
    with pytest.raises(ValueError, match="6 spectra written but 10 labels given"):
        with LibraryStoreWriter(bad, labels=labels, wavelength=wave) as out:
            out.write(np.ones((6, 50)))
    assert not bad.exists() and not list(tmp_path.glob("*.part"))
    # an error inside the block removes the partial file
    with pytest.raises(ValueError, match="non-finite"):
        with LibraryStoreWriter(bad, labels=labels, wavelength=wave) as out:
            out.write(np.full((2, 50), np.nan))
    assert not bad.exists() and not list(tmp_path.glob("*.part"))
    with pytest.raises(ValueError, match=r"shape \(k, 50\)"):
        with LibraryStoreWriter(bad, labels=labels, wavelength=wave) as out:
            out.write(np.ones((2, 49)))
    # a store cut short (e.g. a copy interrupted) is recognised
    data = path.read_bytes()
    (tmp_path / "cut.asdf").write_bytes(data[:-500])
    with pytest.raises(ValueError, match="truncated or inconsistent store"):
        read_library(tmp_path / "cut.asdf")


def test_errors(tmp_path):
    lib = _library(n=3, npix=20)
    path = write_library(lib, tmp_path / "lib.asdf")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_library(lib, path)
    write_library(lib, path, overwrite=True)
    with pytest.raises(TypeError, match="expected a SpectralLibrary"):
        write_library(lib.flux, tmp_path / "x.asdf")
    odd = SpectralLibrary(
        lib.labels, lib.wavelength, lib.flux, meta={"fine": 1, "nested": {"bad": object()}}
    )
    with pytest.raises(TypeError, match=r"meta\['nested'\]\['bad'\] of type object"):
        write_library(odd, tmp_path / "odd.asdf")
    assert not (tmp_path / "odd.asdf").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_library(tmp_path / "missing.asdf")
    (tmp_path / "text.asdf").write_text("not asdf at all")
    with pytest.raises(ValueError, match="not a readable ASDF file"):
        read_library(tmp_path / "text.asdf")
    asdf.AsdfFile({"something": 1}).write_to(tmp_path / "other.asdf")
    with pytest.raises(ValueError, match="not a stellarml library store"):
        read_library(tmp_path / "other.asdf")
    with asdf.open(path) as af:
        tree = dict(af.tree["stellarml_library"])
        tree["format_version"] = "2.0.0"
        tree["flux"] = np.array(tree["flux"])
        tree["ivar"] = np.array(tree["ivar"])
        asdf.AsdfFile({"stellarml_library": tree}).write_to(tmp_path / "future.asdf")
    with pytest.raises(ValueError, match=r"format version '2\.0\.0' is not supported"):
        read_library(tmp_path / "future.asdf")
