"""LineListLibrary: polynomial base spectrum x GALAH DR3 element lines, on the real data."""

import astropy.units as u
import numpy as np
import pytest
import torch

from stellarml.labels import get_label
from stellarml.libraries import LineListLibrary, PolynomialEmulatorLibrary, SpectralLibrary
from stellarml.libraries.linelist import DEFAULT_ELEMENTS, read_galah_linelist

# 6400-6760 Angstrom (a GALAH window) has lines of every default element but K.
WINDOW = (6400, 6760) * u.AA
ELEMENTS = [e for e in DEFAULT_ELEMENTS if e != "k"]
CA_I_6439, CA_I_6455, CA_II_6457 = 6439.0748, 6455.5982, 6456.8752  # air, from the list


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: these small tensors run 10x slower on 2 threads of a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def paths(data_dir):
    emulator = data_dir / "doppler" / "coolstars_cubic_emulator.npz"
    linelist = data_dir / "linelists" / "galah_dr3_linelist.h5"
    if not (emulator.is_file() and linelist.is_file()):
        pytest.skip(
            "needs doppler/coolstars_cubic_emulator.npz and linelists/galah_dr3_linelist.h5"
        )
    return emulator, linelist


@pytest.fixture(scope="module")
def base(paths):
    return PolynomialEmulatorLibrary.from_file(paths[0])


@pytest.fixture(scope="module")
def linelist(paths):
    return read_galah_linelist(paths[1])


@pytest.fixture(scope="module")
def lib(base, linelist):
    return LineListLibrary(base, linelist, WINDOW, elements=ELEMENTS)


def labels(lib, teff=5772.0, logg=4.438, vmicro=1.0, fe_h=0.0, **x_fe):
    values = np.zeros((1, len(lib.label_names)))
    values[0, :4] = teff, logg, vmicro, fe_h
    for name, value in x_fe.items():
        values[0, lib.label_names.index(name)] = value
    return values


def line_index(lib, wavelength):
    j = int(np.argmin(np.abs(lib.lines["wavelength"].to_value(u.AA) - wavelength)))
    assert abs(lib.lines["wavelength"][j].to_value(u.AA) - wavelength) < 1e-3
    return j


def test_reads_the_galah_line_list_in_vacuum(linelist):
    assert len(linelist) == 19125  # atomic lines of stages I and II out of 307,002
    assert linelist.medium == "vacuum"
    assert set(np.unique(linelist.ion)) == {1, 2}
    # Ca I 6439.075 A (air) is stored at its vacuum wavelength 6440.85 A
    ca = (linelist.atomic_number == 20) & (np.abs(linelist.log_gf - 0.39) < 1e-3)
    assert np.isclose(linelist.wavelength[ca], 6440.85, atol=0.01).any()
    air = linelist.to_medium("air")
    assert np.isclose(air.wavelength[ca], 6439.075, atol=0.002).any()
    assert air.to_medium("vacuum").wavelength == pytest.approx(linelist.wavelength, abs=1e-6)


def test_has_at_least_20_registered_labels(lib):
    names = lib.label_names
    assert len(names) == 30 and names[:4] == ["teff", "logg", "vmicro", "fe_h"]
    assert names[4:] == [f"{e}_fe" for e in ELEMENTS]
    for name in names[4:]:
        spec = get_label(name)
        assert spec.unit == u.dex and spec.ucd.startswith("phys.abund.")
        assert lib.label_ranges[name] == (-0.5, 0.5)
    assert lib.label_ranges["teff"] == (3500.0, 8000.0)
    assert lib.meta["lines_per_element"]["ca"] == 73
    assert lib.meta["n_lines"] == len(lib.lines) == 1794
    # the default window of the issue holds all 27 default elements: 31 labels
    wide = LineListLibrary(lib.base, lib.linelist, (3800, 7000) * u.AA)
    assert len(wide.label_names) == 31 and wide.npix == 32001


def test_solar_mix_reproduces_the_base_spectrum(lib, base):
    values = np.vstack(
        [labels(lib, t, g, 1.0, m) for t, g, m in [(5772, 4.438, 0), (4500, 2.5, -1.0)]]
    )
    got = lib.generate(values, dtype=np.float64)
    want = base.generate(values[:, [0, 1, 3]], wavelength_range=WINDOW, dtype=np.float64)
    assert isinstance(got, SpectralLibrary) and got.medium == "air"
    np.testing.assert_allclose(got.flux, want.flux, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.wavelength, want.wavelength)
    # another vmicro than the base's reference moves the element lines
    moved = lib.generate(labels(lib, vmicro=2.5), dtype=np.float64).flux
    assert np.abs(moved[0] - want.flux[0]).max() > 0.01


def test_raising_ca_deepens_ca_lines_only(lib):
    sun = lib.generate(labels(lib), dtype=np.float64).flux[0]
    rich = lib.generate(labels(lib, ca_fe=0.5), dtype=np.float64).flux[0]
    wave = lib.wavelength.to_value(u.AA)
    for centre, before, after in [
        (CA_I_6439, 0.26089, 0.25985),  # strong Ca I: saturated, small change
        (CA_I_6455, 0.50512, 0.43986),  # weaker Ca I
        (CA_II_6457, 0.94880, 0.70974),  # Ca II, E_low 8.44 eV
    ]:
        p = int(np.argmin(np.abs(wave - centre)))
        assert sun[p] == pytest.approx(before, abs=1e-5)
        assert rich[p] == pytest.approx(after, abs=1e-5)
    ca = lib.lines["wavelength"][lib.lines["element"] == "ca"].to_value(u.AA)
    distance = np.abs(wave[:, None] - ca[None, :]).min(axis=1)
    far = distance > 2.0
    assert far.sum() > 1500
    np.testing.assert_array_equal(rich[far], sun[far])
    assert np.all(rich[distance < 0.05] < sun[distance < 0.05])


def test_hyperfine_components_saturate_together(lib, base):
    # Eu II 6645: 11 hyperfine components in the list; their optical depths add up before
    # saturating, so the modulation of the blend stays within 1 +- d_max of the base
    eu = lib.lines["wavelength"][lib.lines["element"] == "eu"].to_value(u.AA)
    assert np.sum(np.abs(eu - 6645.1) < 0.1) == 11
    wave = lib.wavelength.to_value(u.AA)
    p = int(np.argmin(np.abs(wave - 6645.2)))
    star = dict(teff=7500.0, logg=3.5, vmicro=1.0, fe_h=0.3)
    ref = base.generate(labels(lib, **star)[:, [0, 1, 3]], wavelength_range=WINDOW).flux[0, p]
    ratios = [
        lib.generate(labels(lib, **star, eu_fe=x), dtype=np.float64).flux[0, p] / ref
        for x in (-0.5, 0.0, 0.5)
    ]
    # the model's solar-mix line is deeper here than the base's (0.047), so lowering Eu
    # lifts the flux above the base: by 22 %, not by a product of 11 separate factors
    assert ratios == pytest.approx([1.2234, 1.0, 0.7935], abs=1e-4)


def test_hotter_weakens_low_excitation_neutral_lines(lib):
    ca1, ca2 = line_index(lib, CA_I_6455), line_index(lib, CA_II_6457)
    depth = {t: lib.line_depths(labels(lib, teff=t, logg=4.5))[0] for t in (4500, 5500, 6500)}
    # Ca I (E_low 2.52 eV): mostly ionised Ca at higher Teff, weaker line
    assert depth[4500][ca1] == pytest.approx(0.8496, abs=1e-4)
    assert depth[5500][ca1] == pytest.approx(0.7428, abs=1e-4)
    assert depth[6500][ca1] == pytest.approx(0.5867, abs=1e-4)
    # Ca II from 8.44 eV: Boltzmann-populated, stronger when hotter
    assert depth[4500][ca2] < depth[5500][ca2] < depth[6500][ca2]
    # lower gravity, lower electron pressure (Pe ~ g^(1/3)): the weak ionised line grows
    # almost as 1 / Pe (x 10 for 3 dex in log g), the neutral line of ionised Ca barely
    dwarf = lib.line_depths(labels(lib, teff=5000, logg=4.5))[0]
    giant = lib.line_depths(labels(lib, teff=5000, logg=1.5))[0]
    assert giant[ca2] / dwarf[ca2] == pytest.approx(8.3875, rel=1e-3)
    assert giant[ca1] / dwarf[ca1] == pytest.approx(1.0010, rel=1e-3)


def test_saturation_strong_lines_respond_less(lib):
    d0 = lib.line_depths(labels(lib))[0]
    d1 = lib.line_depths(labels(lib, ca_fe=0.5))[0]
    strong, medium, weak = (line_index(lib, w) for w in (CA_I_6439, 6508.8495, 6430.127))
    assert d0[[strong, medium, weak]] == pytest.approx([0.8947, 0.1925, 0.0111], abs=1e-4)
    gain = d1 / d0
    # saturated: +0.4 %; intermediate: x 2.2; weak: almost 10**0.5 = 3.16
    assert gain[[strong, medium, weak]] == pytest.approx([1.0040, 2.1624, 3.0803], abs=1e-4)


def test_jacobian_matches_central_finite_differences(lib):
    values = lib.sample_labels(2, seed=3)
    jac = lib.jacobian(values)
    arr = np.column_stack([values[n].value for n in lib.label_names])
    assert jac.shape == (2, lib.npix, len(lib.label_names)) and jac.dtype == np.float64
    steps = np.array([2.0, 0.002, 0.002, 0.002] + [0.002] * (len(lib.label_names) - 4))
    for k, step in enumerate(steps):
        up, down = arr.copy(), arr.copy()
        up[:, k] += step
        down[:, k] -= step
        fd = (
            lib.generate(up, dtype=np.float64, extrapolate=True).flux
            - lib.generate(down, dtype=np.float64, extrapolate=True).flux
        ) / (2 * step)
        scale = np.abs(jac[:, :, k]).max()
        assert scale > 0, lib.label_names[k]
        np.testing.assert_allclose(jac[:, :, k], fd, atol=2e-5 * scale, err_msg=lib.label_names[k])
    # the five-pass Jacobian is the full forward-mode Jacobian
    full = torch.func.vmap(torch.func.jacfwd(lambda r: lib.flux_tensor(r[None])[0]))(
        torch.as_tensor(arr)
    )
    np.testing.assert_allclose(jac, full.numpy(), rtol=0, atol=1e-12)


def test_jacobian_chunks_and_float32(lib):
    values = lib.sample_labels(3, seed=4)
    jac = lib.jacobian(values)
    np.testing.assert_allclose(lib.jacobian(values, chunk_size=1), jac, rtol=0, atol=1e-13)
    jac32 = lib.jacobian(values, dtype=np.float32)
    assert jac32.dtype == np.float32
    scale = np.abs(jac).max(axis=(0, 1))
    assert np.all(np.abs(jac32 - jac).max(axis=(0, 1)) < 1e-3 * scale)
    flux32 = lib.generate(values).flux
    assert flux32.dtype == np.float32
    np.testing.assert_allclose(flux32, lib.generate(values, dtype=np.float64).flux, atol=2e-5)


def test_degraded_spectra_and_jacobian_at_low_resolution(lib):
    # a LAMOST-like R = 1800 on a log-lambda grid kept 5 Angstrom inside the window
    from stellarml.spectra import log_lambda_grid

    grid = log_lambda_grid(6405, 6755, 1.2e-4) * u.AA
    values = np.vstack([labels(lib, 5000.0, 3.0, 1.5, -0.5, ca_fe=0.3, ti_fe=-0.2)])
    low = lib.generate(values, dtype=np.float64, resolution=1800, wavelength=grid)
    assert low.resolution == 1800 and low.npix == grid.size
    native = lib.generate(values, dtype=np.float64)
    np.testing.assert_allclose(
        low.flux, native.degrade(resolution=1800, wavelength=grid).flux, rtol=0, atol=1e-12
    )
    jac = lib.jacobian(values, resolution=1800, wavelength=grid)
    assert jac.shape == (1, grid.size, len(lib.label_names))
    for name, step in [("teff", 2.0), ("vmicro", 0.002), ("ca_fe", 0.002), ("ti_fe", 0.002)]:
        k = lib.label_names.index(name)
        up, down = values.copy(), values.copy()
        up[0, k] += step
        down[0, k] -= step
        fd = (
            lib.generate(up, dtype=np.float64, resolution=1800, wavelength=grid).flux
            - lib.generate(down, dtype=np.float64, resolution=1800, wavelength=grid).flux
        ) / (2 * step)
        scale = np.abs(jac[:, :, k]).max()
        np.testing.assert_allclose(jac[:, :, k], fd, atol=1e-5 * scale, err_msg=name)
    # at R = 1800 the Ca lines still answer: the strongest response is at the blend of
    # Ca I 6455.60 and Ca II 6456.88 (the strong 6439 and 6462 lines are saturated)
    k = lib.label_names.index("ca_fe")
    peak = grid.to_value(u.AA)[np.argmin(jac[0, :, k])]
    assert 6455.0 < peak < 6457.0
    assert jac[0, :, k].min() == pytest.approx(-0.04713, abs=1e-4)  # per dex


def test_sample_is_reproducible_and_inside_the_box(lib):
    a = lib.sample(8, seed=5)
    b = lib.sample(8, seed=5)
    np.testing.assert_array_equal(a.flux, b.flux)
    assert set(a.label_names) == set(lib.label_names) and a.flux.shape == (8, lib.npix)
    assert a.meta["sampling"]["design"] == "training" and "approximation" in a.meta
    for design in ("uniform", "latin", "sobol", "training"):
        table = lib.sample_labels(16, design=design, seed=1)
        for name, (lo, hi) in lib.label_ranges.items():
            assert np.all((table[name].value >= lo) & (table[name].value <= hi)), (design, name)
    narrow = lib.sample_labels(16, ranges={"ca_fe": (0.1, 0.2)}, seed=1)
    assert narrow["ca_fe"].value.min() >= 0.1 and narrow["ca_fe"].value.max() <= 0.2
    degraded = a.degrade(resolution=1800)
    assert degraded.resolution == 1800 and degraded.flux.shape == a.flux.shape


def test_bad_inputs_are_rejected(lib, base, linelist):
    with pytest.raises(ValueError, match="ca_fe outside the library's box"):
        lib.generate(labels(lib, ca_fe=0.8))
    with pytest.raises(ValueError, match="teff outside"):
        lib.jacobian(labels(lib, teff=9000.0))
    with pytest.raises(ValueError, match=r"shape \(n, 30\)"):
        lib.generate(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="lack"):
        lib.generate({"teff": [5000.0] * u.K, "logg": [4.0] * u.dex})
    with pytest.raises(ValueError, match="does not model labels"):
        lib.generate({**{n: [0.0] for n in lib.label_names}, "teff": [5000.0], "k_fe": [0.0]})
    with pytest.raises(ValueError, match="unknown elements"):
        LineListLibrary(base, linelist, WINDOW, elements=["ca", "xx"])
    with pytest.raises(ValueError, match="'fe' is not an"):
        LineListLibrary(base, linelist, WINDOW, elements=["ca", "fe"])
    with pytest.raises(ValueError, match=r"\['k'\] have no line"):
        LineListLibrary(base, linelist, WINDOW)
    with pytest.raises(ValueError, match="unbroadened"):
        LineListLibrary(base.degrade(resolution=5000, wavelength_range=WINDOW), linelist, WINDOW)
    with pytest.raises(ValueError, match=r"vmicro_ref 5\.0 km/s must lie in vmicro_range"):
        LineListLibrary(base, linelist, WINDOW, elements=ELEMENTS, vmicro_ref=5.0)
    with pytest.raises(ValueError, match="30 columns"):
        lib.flux_tensor(torch.zeros((2, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        lib.generate(labels(lib), dtype=np.float16)
    with pytest.raises(ValueError, match="inside the box"):
        lib.sample_labels(4, ranges={"ca_fe": (-1.0, 0.0)})
