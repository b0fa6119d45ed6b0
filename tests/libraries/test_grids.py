"""PHOENIX and Kurucz grid libraries: multilinear interpolation, ragged grids, downloads."""

import itertools

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable
from astropy.utils import data as astropy_data
from grid_files import (
    kurucz_relpath,
    kurucz_wavelengths,
    phoenix_relpath,
    write_kurucz_file,
    write_phoenix_flux,
    write_phoenix_tree,
)

from stellarml.io.kurucz import read_kurucz_batch
from stellarml.io.phoenix import PHOENIX_RESOLUTION, PHOENIX_WAVE_FILENAME, read_phoenix
from stellarml.libraries import SpectralLibrary
from stellarml.libraries.download import GridPointNotFound
from stellarml.libraries.grids import KuruczLibrary, PhoenixLibrary
from stellarml.spectra import log_lambda_grid, vacuum_to_air

TEFFS, LOGGS, METALS = (5000.0, 5100.0, 5200.0), (4.0, 4.5), (-0.5, 0.0)
MISSING = (5200.0, 4.5, 0.0, 0.0)  # a ragged corner


@pytest.fixture(scope="module")
def phoenix_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("phoenix") / "HiResFITS"
    points = [(t, g, m, 0.0) for t, g, m in itertools.product(TEFFS, LOGGS, METALS)]
    points.remove(MISSING)
    points += [(5000.0, 4.5, -0.5, 0.2), (5100.0, 4.5, -0.5, 0.2)]  # Z-0.5.Alpha=+0.20
    wave, paths = write_phoenix_tree(root, points)
    return root, wave, paths


@pytest.fixture(scope="module")
def phoenix(phoenix_tree):
    return PhoenixLibrary(phoenix_tree[0])


def _model(paths, *point):
    return np.asarray(read_phoenix(paths[tuple(float(v) for v in point)]).flux.value, float)


def test_local_grid_axes_and_exact_grid_points(phoenix, phoenix_tree):
    _, wave, paths = phoenix_tree
    np.testing.assert_array_equal(phoenix.axes["teff"], TEFFS)
    np.testing.assert_array_equal(phoenix.axes["alpha_fe"], [0.0, 0.2])
    np.testing.assert_allclose(phoenix.wavelength.to_value(u.AA), wave)
    for point in [(5000.0, 4.0, -0.5, 0.0), (5200.0, 4.0, 0.0, 0.0), (5100.0, 4.5, -0.5, 0.2)]:
        spec = phoenix.spectrum(*point)
        np.testing.assert_array_equal(spec.flux.value, _model(paths, *point))
        assert spec.flux.unit == u.erg / u.s / u.cm**3
        assert spec.meta["teff"] == point[0] * u.K and spec.meta["alpha_fe"] == point[3] * u.dex
        assert spec.meta["resolution"] == PHOENIX_RESOLUTION
        assert spec.meta["interpolation"]["weights"].nnz == 1  # no neighbour needed
    # the upper edge of every axis is inside the grid
    spec = phoenix.spectrum(5200 * u.K, 4.0, 0.0)
    np.testing.assert_array_equal(spec.flux.value, _model(paths, 5200, 4.0, 0.0, 0.0))


def test_interpolation_is_multilinear(phoenix, phoenix_tree):
    _, _, paths = phoenix_tree
    # midway in teff: the mean of the two models
    mid = phoenix.spectrum(5050.0, 4.0, -0.5).flux.value
    np.testing.assert_allclose(
        mid,
        0.5 * (_model(paths, 5000, 4.0, -0.5, 0) + _model(paths, 5100, 4.0, -0.5, 0)),
        rtol=1e-12,
    )
    # a general point: trilinear weights of the 8 corners
    teff, logg, m_h = 5030.0, 4.1, -0.35
    t, g, m = (teff - 5000) / 100, (logg - 4.0) / 0.5, (m_h + 0.5) / 0.5
    expected = sum(
        (t if a else 1 - t)
        * (g if b else 1 - g)
        * (m if c else 1 - m)
        * _model(paths, 5000 + 100 * a, 4.0 + 0.5 * b, -0.5 + 0.5 * c, 0.0)
        for a, b, c in itertools.product((0, 1), repeat=3)
    )
    np.testing.assert_allclose(phoenix.spectrum(teff, logg, m_h).flux.value, expected, rtol=1e-12)
    # linear along an axis: three points on a line are collinear
    f = [phoenix.spectrum(x, 4.2, -0.1).flux.value for x in (5010.0, 5040.0, 5090.0)]
    np.testing.assert_allclose(f[1], f[0] + (f[2] - f[0]) * 30 / 80, rtol=1e-10)
    # alpha: the alpha=+0.2 models exist at m_h=-0.5, logg=4.5
    half = phoenix.spectrum(5000.0, 4.5, -0.5, 0.1).flux.value
    np.testing.assert_allclose(
        half,
        0.5 * (_model(paths, 5000, 4.5, -0.5, 0.0) + _model(paths, 5000, 4.5, -0.5, 0.2)),
        rtol=1e-12,
    )


def test_many_label_sets_at_once(phoenix):
    teff = np.array([5000.0, 5050.0, 5130.0, 5199.0])  # teff > 5100 needs logg 4 or m_h -0.5
    logg = np.array([4.0, 4.25, 4.1, 4.0])
    m_h = np.array([-0.5, -0.2, -0.5, 0.0])
    batch = phoenix.spectrum(teff * u.K, logg * u.dex, m_h)
    assert batch.flux.shape == (4, phoenix.wavelength.size)
    np.testing.assert_array_equal(batch.meta["teff"], teff * u.K)
    for i in range(4):
        np.testing.assert_allclose(
            batch.flux.value[i], phoenix.spectrum(teff[i], logg[i], m_h[i]).flux.value, rtol=1e-12
        )
    weights, points = phoenix.weights(QTable({"teff": teff * u.K, "logg": logg, "fe_h": m_h}))
    assert weights.shape == (4, len(points))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights @ points[:, 0], teff)  # linear weights reproduce labels
    np.testing.assert_allclose(
        phoenix.interpolate(np.column_stack([teff, logg, m_h, np.zeros(4)])), batch.flux.value
    )


def test_ragged_grid_and_outside_errors(phoenix):
    # (5200, 4.5, 0.0) is missing: every label set needing it is refused, naming it
    with pytest.raises(GridPointNotFound) as info:
        phoenix.spectrum([5000.0, 5150.0], 4.4, -0.2)
    assert isinstance(info.value, LookupError)
    text = str(info.value)
    assert "teff=5200, logg=4.5, m_h=0, alpha_fe=0" in text and "label set 1" in text
    assert info.value.point == dict(zip(("teff", "logg", "m_h", "alpha_fe"), MISSING, strict=True))
    # ... but labels on a face that does not need that corner are fine
    phoenix.spectrum(5150.0, 4.0, -0.2)
    phoenix.spectrum(5150.0, 4.5, -0.5)
    with pytest.raises(ValueError, match=r"teff outside the grid range 5000\.\.5200 .*teff=5300"):
        phoenix.spectrum(5300.0, 4.5, 0.0)
    with pytest.raises(ValueError, match="logg outside"):
        phoenix.spectrum(5100.0, 3.9, 0.0)
    # alpha-modified models exist only at m_h=-0.5, logg 4.5 here
    with pytest.raises(GridPointNotFound, match=r"alpha_fe=0\.2"):
        phoenix.spectrum(5000.0, 4.2, -0.5, 0.1)
    with pytest.raises(ValueError, match="labels lack m_h"):
        phoenix.weights({"teff": [5000.0], "logg": [4.5]})
    with pytest.raises(ValueError, match="both m_h and fe_h"):
        phoenix.weights({"teff": [5000.0], "logg": [4.5], "m_h": [0.0], "fe_h": [-0.5]})


def test_to_library_degrades_the_grid_points_once(phoenix, phoenix_tree):
    labels = QTable(
        {
            "teff": [5010.0, 5080.0, 5120.0, 5190.0] * u.K,
            "logg": [4.1, 4.2, 4.0, 4.3] * u.dex,
            "fe_h": [-0.1, -0.3, -0.2, -0.5] * u.dex,
            "id": ["a", "b", "c", "d"],
        }
    )
    grid = log_lambda_grid(4900.0, 5300.0, 1 / (1500 * 3)) * u.AA
    lib = phoenix.to_library(labels, resolution=1500, wavelength=grid, metallicity_label="fe_h")
    assert isinstance(lib, SpectralLibrary) and lib.ivar is None
    assert lib.label_names == ["teff", "logg", "fe_h", "alpha_fe"]
    assert list(lib.labels["id"]) == ["a", "b", "c", "d"]
    assert lib.resolution == 1500 and lib.medium == "vacuum" and lib.flux.dtype == np.float32
    assert lib.meta["flux_unit"] == "erg / (s cm3)" and lib.meta["n_grid_points"] == 11
    # the same as interpolating at full resolution and degrading each spectrum
    native = SpectralLibrary(
        labels,
        phoenix.wavelength,
        phoenix.spectrum(labels["teff"], labels["logg"], labels["fe_h"]).flux.value,
        resolution=PHOENIX_RESOLUTION,
    ).degrade(resolution=1500, wavelength=grid)
    np.testing.assert_allclose(lib.flux, native.flux, rtol=2e-6)
    # air wavelengths: the grid is converted before resampling
    air = vacuum_to_air(grid.value)[5:-5] * u.AA
    lib_air = phoenix.to_library(labels[:2], fwhm=3.0 * u.AA, wavelength=air, medium="air")
    assert lib_air.medium == "air" and lib_air.fwhm == 3.0 * u.AA and lib_air.resolution is None
    with pytest.raises(ValueError, match="reaches outside"):
        phoenix.to_library(labels, wavelength=log_lambda_grid(4000.0, 5000.0, 1e-4) * u.AA)
    with pytest.raises(ValueError, match="cannot be sharpened"):
        phoenix.to_library(labels, resolution=1e6)


def test_to_library_streams_into_a_lazy_store(phoenix, tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    labels = {
        "teff": rng.uniform(5000, 5100, n),
        "logg": rng.uniform(4.0, 4.5, n),
        "m_h": rng.uniform(-0.5, 0.0, n),
    }
    grid = log_lambda_grid(4900.0, 5300.0, 2e-4) * u.AA
    memory = phoenix.to_library(labels, resolution=2000, wavelength=grid)
    stored = phoenix.to_library(
        labels, resolution=2000, wavelength=grid, path=tmp_path / "lib.asdf", chunk_size=64
    )
    base = stored.flux
    while not isinstance(base, np.memmap) and getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, np.memmap)
    np.testing.assert_array_equal(stored.flux, memory.flux)
    assert stored.meta["store"]["path"].endswith("lib.asdf")
    np.testing.assert_array_equal(stored.label_array(), memory.label_array())


def test_download_on_demand(phoenix_tree, grid_server, astropy_cache, tmp_path):
    root, _, paths = phoenix_tree
    # serve the same grid, minus one model
    served = grid_server.root / "HiResFITS"
    for point, path in paths.items():
        if point != (5200.0, 4.0, 0.0, 0.0):
            dest = served / phoenix_relpath(*point)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    (served / PHOENIX_WAVE_FILENAME).write_bytes((root / PHOENIX_WAVE_FILENAME).read_bytes())
    remote = PhoenixLibrary(base_url=grid_server.url + "HiResFITS/", show_progress=False)
    assert remote.axes["teff"].size > 60  # the full PHOENIX axes
    spec = remote.spectrum(5050.0, 4.25, -0.25)
    local_grid = PhoenixLibrary(root)
    local = local_grid.spectrum(5050.0, 4.25, -0.25)
    np.testing.assert_array_equal(spec.flux, local.flux)
    fetched = {path for path, _ in grid_server.requests}
    assert len(fetched) == 9  # the wavelength file and the 8 corners
    assert len(astropy_data.get_cached_urls()) == 9
    with pytest.raises(GridPointNotFound) as info:
        remote.spectrum(5150.0, 4.0, -0.1)
    assert "HTTP 404" in str(info.value) and "teff=5200, logg=4, m_h=0," in str(info.value)
    # alpha-modified corners outside the PHOENIX alpha box are refused without a request
    n = len(grid_server.requests)
    with pytest.raises(GridPointNotFound, match="alpha-modified"):
        remote.spectrum(5050.0, 4.25, 0.25, 0.1)
    assert len(grid_server.requests) == n
    # with a directory the downloads fill a mirror that later works offline
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    PhoenixLibrary(mirror, base_url=grid_server.url + "HiResFITS/", show_progress=False).spectrum(
        5100.0, 4.5, -0.5
    )
    offline = PhoenixLibrary(mirror)
    assert (mirror / PHOENIX_WAVE_FILENAME).is_file()
    np.testing.assert_array_equal(
        offline.spectrum(5100.0, 4.5, -0.5).flux, local_grid.spectrum(5100.0, 4.5, -0.5).flux
    )


@pytest.fixture(scope="module")
def kurucz_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("kurucz")
    for teff, m_h in itertools.product((5000.0, 5250.0, 5500.0), (-0.5, 0.0)):
        missing = (0.0, 0.5) if teff == 5500.0 else ()
        write_kurucz_file(root / kurucz_relpath(teff, m_h), teff, m_h, missing=missing)
    return root


def test_kurucz_grid(kurucz_tree):
    grid = KuruczLibrary(kurucz_tree / "ck04models")
    np.testing.assert_array_equal(grid.axes["teff"], [5000.0, 5250.0, 5500.0])
    np.testing.assert_array_equal(grid.axes["logg"], np.arange(0.0, 5.01, 0.5))
    np.testing.assert_allclose(grid.wavelength.to_value(u.AA), kurucz_wavelengths())
    atlas = read_kurucz_batch(kurucz_tree / kurucz_relpath(5250.0, -0.5))
    row = int(np.flatnonzero(atlas.meta["logg"].value == 3.5)[0])
    exact = grid.spectrum(5250.0, 3.5, -0.5)
    np.testing.assert_array_equal(exact.flux.value, atlas.flux.value[row].astype(np.float32))
    assert exact.flux.unit == u.erg / u.s / u.cm**2 / u.AA
    other = read_kurucz_batch(kurucz_tree / kurucz_relpath(5000.0, -0.5)).flux.value[row]
    mid = grid.spectrum(5125.0, 3.5, -0.5).flux.value
    np.testing.assert_allclose(
        mid,
        0.5 * (atlas.flux.value[row].astype(np.float32) + other.astype(np.float32).astype(float)),
        rtol=1e-12,
    )
    # gravity columns of zeros are missing grid points
    with pytest.raises(GridPointNotFound, match="all zeros"):
        grid.spectrum(5400.0, 0.25, 0.0)
    grid.spectrum(5400.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="solar-scaled"):
        grid.spectrum(5000.0, 4.0, 0.0, alpha_fe=0.4)
    lib = grid.to_library({"teff": [5100.0, 5300.0], "logg": [4.2, 2.3], "m_h": [-0.1, -0.4]})
    assert lib.label_names == ["teff", "logg", "m_h"] and lib.resolution is None
    assert lib.npix == kurucz_wavelengths().size


def test_kurucz_download_on_demand(kurucz_tree, grid_server, astropy_cache):
    for path in kurucz_tree.rglob("*.fits"):
        dest = grid_server.root / path.relative_to(kurucz_tree)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    remote = KuruczLibrary(base_url=grid_server.url, show_progress=False)
    local = KuruczLibrary(kurucz_tree)
    np.testing.assert_array_equal(
        remote.spectrum(5100.0, 4.2, -0.2).flux, local.spectrum(5100.0, 4.2, -0.2).flux
    )
    with pytest.raises(GridPointNotFound, match="HTTP 404"):
        remote.spectrum(5600.0, 4.0, 0.0)


def test_constructor_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PhoenixLibrary(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no PHOENIX HiRes files"):
        PhoenixLibrary(tmp_path)
    with pytest.raises(FileNotFoundError, match="no ck04 atlas files"):
        KuruczLibrary(tmp_path)
    with pytest.raises(ValueError, match="atlas must be"):
        KuruczLibrary(tmp_path, atlas="marcs")


def test_mislabelled_or_malformed_model_files_are_refused(tmp_path):
    wave, paths = write_phoenix_tree(tmp_path, [(5000.0, 4.5, 0.0, 0.0), (5100.0, 4.5, 0.0, 0.0)])
    write_phoenix_flux(paths[(5100.0, 4.5, 0.0, 0.0)], wave, 5100.0, 4.5, 0.0, header_teff=5200.0)
    grid = PhoenixLibrary(tmp_path)
    grid.spectrum(5000.0, 4.5, 0.0)
    with pytest.raises(ValueError, match="are not the grid point"):
        grid.spectrum(5050.0, 4.5, 0.0)
    write_phoenix_flux(paths[(5100.0, 4.5, 0.0, 0.0)], wave[:-5], 5100.0, 4.5, 0.0)
    with pytest.raises(ValueError, match="expected a 1-D PHOENIX flux image"):
        grid.spectrum(5100.0, 4.5, 0.0)
