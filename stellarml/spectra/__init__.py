"""Preparing spectra for stellarml models.

Array-level tools (plain float arrays, wavelengths in Angstrom, vectorised
over ``(n_spectra, n_pixels)`` batches) and the specutils-level `prepare`:

* `doppler_shift_wavelength`, `air_to_vacuum`, `vacuum_to_air`, `estimate_rv`;
  `measure_rv` (specutils spectra against the shipped `rv_templates`) and
  `prepare_with_rv` (`prepare`, measuring the unknown radial velocities)
* `log_lambda_grid`, `gaussian_broaden`
* `resample_flux`, `InverseVarianceResampler`
* `normalize_continuum`
* `rotational_broaden`, `macroturbulence_broaden`, `instrumental_broaden` (and
  their kernels), `mask_from_spectrum`, `transfer_mask`, `apply_mask`,
  `error_from_spectrum` (`stellarml.spectra.kernels`)
* `PreparationSettings`, `PreparedBatch`, `prepare_arrays`, `prepare`, and `SpectrumParts`
  (the parts of one star, one row)
* `der_snr_ivar`, `estimate_missing_noise`: noise of spectra without uncertainties
"""

from .broadening import gaussian_broaden, log_lambda_grid
from .continuum import normalize_continuum
from .doppler import C_KMS, air_to_vacuum, doppler_shift_wavelength, estimate_rv, vacuum_to_air
from .kernels import (
    apply_mask,
    error_from_spectrum,
    instrumental_broaden,
    macroturbulence_broaden,
    macroturbulence_kernel,
    mask_from_spectrum,
    rotational_broaden,
    rotational_kernel,
    transfer_mask,
)
from .noise import der_snr_ivar, estimate_missing_noise
from .parts import SpectrumParts
from .prepare import (
    RV_SOURCES,
    PreparationSettings,
    PreparedBatch,
    prepare,
    prepare_arrays,
    warn_assumptions,
)
from .resample import InverseVarianceResampler, resample_flux
from .rv import MeasuredRV, measure_rv, prepare_with_rv, rv_templates

__all__ = [
    "C_KMS",
    "RV_SOURCES",
    "InverseVarianceResampler",
    "MeasuredRV",
    "PreparationSettings",
    "PreparedBatch",
    "SpectrumParts",
    "air_to_vacuum",
    "apply_mask",
    "der_snr_ivar",
    "doppler_shift_wavelength",
    "error_from_spectrum",
    "estimate_missing_noise",
    "estimate_rv",
    "gaussian_broaden",
    "instrumental_broaden",
    "log_lambda_grid",
    "macroturbulence_broaden",
    "macroturbulence_kernel",
    "mask_from_spectrum",
    "measure_rv",
    "normalize_continuum",
    "prepare",
    "prepare_arrays",
    "prepare_with_rv",
    "resample_flux",
    "rotational_broaden",
    "rotational_kernel",
    "rv_templates",
    "transfer_mask",
    "vacuum_to_air",
    "warn_assumptions",
]
