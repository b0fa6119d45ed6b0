"""Noise estimates for spectra that come without uncertainties (DER_SNR).

Every stellarml model weighs pixels by their inverse variance, and the
networks read the S/N. A spectrum given without uncertainties (flagged
``NO_UNCERTAINTY`` by `~stellarml.spectra.prepare`, its ``ivar`` only marking
the good pixels) gets its noise estimated from the flux itself, once, in
`estimate_missing_noise`, which `stellarml.derive_labels` calls for every model.
"""

import math

import numpy as np

from ..flags import FATAL, LabelFlag

__all__ = ["der_snr_ivar", "estimate_missing_noise"]


def der_snr_ivar(flux, ivar):
    """Inverse variance estimated from the spectra themselves (DER_SNR).

    For spectra without uncertainties: the noise of each spectrum is
    ``1.482602 / sqrt(6) * median|2 f_i - f_(i-2) - f_(i+2)|`` over pixels
    whose three values are all good (Stoehr et al. 2008, the DER_SNR
    estimator), and every good pixel gets ``ivar = 1 / noise^2``. On spectra
    sampled close to Nyquist, real line structure adds to the differences, so
    the noise of very high-S/N spectra is overestimated (their S/N is a lower
    limit); the networks' weight channel saturates at high S/N, so this
    matters little.

    Parameters
    ----------
    flux : `numpy.ndarray`
        ``(n, npix)`` continuum-normalised flux.
    ivar : `numpy.ndarray`
        ``(n, npix)``: only ``ivar > 0`` (good pixel) is used, so the estimate
        of a spectrum whose ``ivar`` was already estimated is the same again.

    Returns
    -------
    ivar : `numpy.ndarray`
        ``(n, npix)`` float32, 0 where the input was 0.
    snr : `numpy.ndarray`
        ``(n,)`` the estimated S/N per pixel at the continuum (``1 / noise``;
        NaN for a spectrum with fewer than 5 good consecutive pixels).

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import der_snr_ivar
    >>> rng = np.random.default_rng(0)
    >>> flux = 1 + rng.normal(0, 0.02, (1, 2000))  # S/N 50
    >>> ivar, snr = der_snr_ivar(flux, np.ones_like(flux))
    >>> bool(abs(snr[0] - 50) < 2)
    True
    """
    flux = np.asarray(flux, dtype=np.float64)
    good = np.asarray(ivar) > 0
    d = np.abs(2.0 * flux[:, 2:-2] - flux[:, :-4] - flux[:, 4:])
    valid = good[:, 2:-2] & good[:, :-4] & good[:, 4:]
    count = valid.sum(axis=1)
    d = np.sort(np.where(valid, d, np.inf), axis=1)
    rows = np.arange(d.shape[0])
    hi = np.clip(count // 2, 0, d.shape[1] - 1)
    lo = np.clip((count - 1) // 2, 0, d.shape[1] - 1)
    median = np.where(count > 0, 0.5 * (d[rows, lo] + d[rows, hi]), np.nan)
    noise = 1.482602 / math.sqrt(6.0) * median
    noise = np.where(np.isfinite(noise), np.maximum(noise, 1e-4), np.nan)
    snr = 1.0 / noise
    out = np.where(good & np.isfinite(noise)[:, None], snr[:, None] ** 2, 0.0)
    return out.astype(np.float32), snr


def estimate_missing_noise(batch):
    """A copy of a prepared batch whose rows without uncertainties have a DER_SNR noise estimate.

    Rows flagged `~stellarml.flags.LabelFlag.NO_UNCERTAINTY` (and without a
    fatal flag) get ``ivar`` from `der_snr_ivar` and ``snr`` set to the
    estimated S/N per pixel; the flag stays, so the table says that the noise
    was estimated. Other rows are unchanged. Applying it twice gives the same
    batch.

    Parameters
    ----------
    batch : `~stellarml.spectra.PreparedBatch`
        Prepared spectra (e.g. from `~stellarml.spectra.prepare`); it is not modified.

    Returns
    -------
    batch : `~stellarml.spectra.PreparedBatch`
        ``batch`` itself when no row needs an estimate.

    Examples
    --------
    Two spectra without uncertainties, with noise 0.01 and 0.05 per input pixel:

    >>> import numpy as np
    >>> from stellarml.flags import describe_flags
    >>> from stellarml.spectra import (
    ...     PreparationSettings, estimate_missing_noise, log_lambda_grid, prepare_arrays
    ... )
    >>> settings = PreparationSettings(log_lambda_grid(5000.0, 5400.0, 1e-4))
    >>> wave = np.linspace(4950.0, 5450.0, 1001)  # [Angstrom]
    >>> rng = np.random.default_rng(0)
    >>> flux = 1 + rng.normal(0, [[0.01], [0.05]], (2, wave.size))
    >>> batch = prepare_arrays(wave, flux, None, settings)
    >>> print(describe_flags(batch.flags[0]), batch.snr)
    ['NO_UNCERTAINTY'] [nan nan]
    >>> out = estimate_missing_noise(batch)
    >>> print(np.round(out.snr), describe_flags(out.flags[0]))  # S/N per grid pixel
    [133.  25.] ['NO_UNCERTAINTY']
    >>> again = estimate_missing_noise(out)  # applying it twice changes nothing
    >>> print(bool(np.array_equal(again.ivar, out.ivar)), bool(np.all(out.ivar > 0)))
    True True

    The S/N per pixel of the model grid is higher than that of the input
    pixels here: resampling averages neighbouring input pixels.
    """
    flags = np.asarray(batch.flags, dtype=np.int64)
    rows = np.flatnonzero(
        ((flags & int(LabelFlag.NO_UNCERTAINTY)) != 0) & ((flags & int(FATAL)) == 0)
    )
    if rows.size == 0:
        return batch
    out = batch[np.arange(len(batch))]
    flux = np.where(out.ivar[rows] > 0, out.flux[rows], np.float32(0.0))
    out.ivar[rows], snr = der_snr_ivar(flux, out.ivar[rows])
    out.snr[rows] = np.where(np.isfinite(snr), snr, out.snr[rows])
    return out
