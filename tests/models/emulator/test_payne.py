"""PayneEmulator: the binspec layout read exactly, with exact Jacobians."""

import numpy as np
import pytest
import torch

from stellarml.models.emulator import PayneEmulator, SpectrumEmulator


@pytest.fixture(scope="module")
def apogee(data_dir):
    folder = data_dir / "apogee"
    emu = PayneEmulator.from_npz(
        folder / "binspec_apogee_emulator.npz", folder / "apogee_wavelength.npz"
    )
    return emu, np.load(folder / "binspec_apogee_emulator.npz")


def test_reads_the_real_apogee_emulator_and_matches_its_formula(apogee):
    emu, raw = apogee
    assert isinstance(emu, SpectrumEmulator)
    assert emu.label_names == ("teff", "logg", "fe_h", "mg_fe", "vmacro")
    assert emu.n_pixels == 7214
    assert emu.wavelength[0] == pytest.approx(15168.1285, abs=1e-3)
    labels = np.array([[4750.0, 4.5, -0.2, 0.1, 6.0], [5600.0, 4.4, 0.1, 0.0, 4.0]])
    flux = emu.flux(torch.tensor(labels, dtype=torch.float32)).numpy()
    # the layout's own formula, in float64 numpy
    x = (labels - raw["x_min"]) / (raw["x_max"] - raw["x_min"]) - 0.5
    hidden = 1 / (1 + np.exp(-(np.einsum("pkl,nl->npk", raw["w_array_0"], x) + raw["b_array_0"])))
    expected = np.einsum("pk,npk->np", raw["w_array_1"], hidden) + raw["b_array_1"]
    np.testing.assert_allclose(flux, expected, atol=2e-5)
    # a K dwarf's normalised spectrum: continuum near 1, real absorption lines
    assert 0.95 < np.median(flux[0]) < 1.02
    assert flux[0].min() < 0.6


def test_jacobian_matches_finite_differences(apogee):
    emu, _ = apogee
    x = torch.tensor([[0.05, -0.1, 0.1, 0.0, -0.2]], dtype=torch.float64)
    emu64 = emu.double()
    jac = emu64.jacobian(x)[0].numpy()
    h = 1e-5
    for k in range(5):
        dx = torch.zeros_like(x)
        dx[0, k] = h
        fd = ((emu64(x + dx) - emu64(x - dx)) / (2 * h))[0].detach().numpy()
        np.testing.assert_allclose(jac[:, k], fd, rtol=1e-5, atol=1e-7)
    assert np.abs(jac).max() > 0.1  # the labels move the spectrum
    emu.float()


def test_bad_layouts_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="w0 must be"):
        PayneEmulator(
            rng.normal(size=(10, 3, 2)),
            np.zeros((10, 3)),
            np.zeros((10, 3)),
            np.zeros(10),
            ["teff", "logg", "fe_h"],
            [0, 0, 0],
            [1, 1, 1],
            np.arange(10.0) + 5000,
        )
    with pytest.raises(ValueError, match="b1 must have shape"):
        PayneEmulator(
            rng.normal(size=(10, 3, 2)),
            np.zeros((10, 3)),
            np.zeros((10, 3)),
            np.zeros(9),
            ["teff", "logg"],
            [0, 0],
            [1, 1],
            np.arange(10.0) + 5000,
        )
    with pytest.raises(ValueError, match="non-finite"):
        PayneEmulator(
            np.full((10, 3, 2), np.nan),
            np.zeros((10, 3)),
            np.zeros((10, 3)),
            np.zeros(10),
            ["teff", "logg"],
            [0, 0],
            [1, 1],
            np.arange(10.0) + 5000,
        )
    with pytest.raises(ValueError, match="label_hi > label_lo"):
        PayneEmulator(
            np.zeros((10, 3, 2)),
            np.zeros((10, 3)),
            np.zeros((10, 3)),
            np.zeros(10),
            ["teff", "logg"],
            [1, 0],
            [0, 1],
            np.arange(10.0) + 5000,
        )
    path = tmp_path / "partial.npz"
    np.savez(path, w_array_0=np.zeros((10, 3, 2)))
    with pytest.raises(ValueError, match="lacks b_array_0"):
        PayneEmulator.from_npz(path, np.arange(10.0) + 5000)
    emu = PayneEmulator(
        np.zeros((10, 3, 2)),
        np.zeros((10, 3)),
        np.zeros((10, 3)),
        np.zeros(10),
        ["teff", "logg"],
        [0, 0],
        [1, 1],
        np.arange(10.0) + 5000,
    )
    with pytest.raises(ValueError, match=r"x must be \(n, 2\)"):
        emu(torch.zeros(3, 4))
