"""Preparing spectra for stellarml models.

Array-level tools (plain float arrays, wavelengths in Angstrom, vectorised
over ``(n_spectra, n_pixels)`` batches) and the specutils-level `prepare`:

* `doppler_shift_wavelength`, `air_to_vacuum`, `vacuum_to_air`, `estimate_rv`
* `log_lambda_grid`, `gaussian_broaden`
* `resample_flux`, `InverseVarianceResampler`
* `normalize_continuum`
* `PreparationSettings`, `PreparedBatch`, `prepare_arrays`, `prepare`
"""

from .broadening import gaussian_broaden, log_lambda_grid
from .continuum import normalize_continuum
from .doppler import C_KMS, air_to_vacuum, doppler_shift_wavelength, estimate_rv, vacuum_to_air
from .prepare import PreparationSettings, PreparedBatch, prepare, prepare_arrays
from .resample import InverseVarianceResampler, resample_flux

__all__ = [
    "C_KMS",
    "InverseVarianceResampler",
    "PreparationSettings",
    "PreparedBatch",
    "air_to_vacuum",
    "doppler_shift_wavelength",
    "estimate_rv",
    "gaussian_broaden",
    "log_lambda_grid",
    "normalize_continuum",
    "prepare",
    "prepare_arrays",
    "resample_flux",
    "vacuum_to_air",
]
