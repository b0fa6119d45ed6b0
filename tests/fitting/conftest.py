"""Fixtures of the fitting tests: the real APOGEE emulator, and noisy spectra from it."""

import pytest

from stellarml.models.emulator import PayneEmulator


@pytest.fixture(scope="session")
def apogee_emulator(data_dir):
    """The real 5-label APOGEE emulator (binspec layout, 7214 pixels)."""
    folder = data_dir / "apogee"
    return PayneEmulator.from_npz(
        folder / "binspec_apogee_emulator.npz", folder / "apogee_wavelength.npz"
    )


@pytest.fixture(scope="session")
def small_emulator(apogee_emulator):
    """Every 6th pixel of the APOGEE emulator (1203 pixels): the same physics, faster."""
    w = apogee_emulator.weights()
    keep = slice(None, None, 6)
    return PayneEmulator(
        w["w0"][keep],
        w["b0"][keep],
        w["w1"][keep],
        w["b1"][keep],
        apogee_emulator.label_names,
        apogee_emulator.label_lo.numpy(),
        apogee_emulator.label_hi.numpy(),
        apogee_emulator.wavelength[keep],
    )
