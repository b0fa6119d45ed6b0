"""Several parts of one star (CCDs, echelle orders) combined into one row of a batch.

A plain `~specutils.SpectrumList` (or list) is *a list of stars*: one row per
spectrum. `SpectrumParts` says the opposite: its spectra are *the parts of one
star* (the four HERMES cameras of a GALAH star, the echelle orders of a
CARMENES file) and `~stellarml.spectra.prepare` gives them **one** row. The
stellarml readers that know a file holds one star return it
(`~stellarml.io.echelle.read_galah_star`, `~stellarml.io.echelle.read_carmenes`).

How the row is made (`_combine_parts`):

1. every part is prepared on the model grid as a spectrum of its own, with its
   own medium, LSF, radial velocity, mask and uncertainties (the code path of
   any spectrum), continuum-normalised on its own (so parts with different
   flux scales or blaze functions combine), with no coverage threshold;
2. the parts' normalised fluxes are averaged pixel by pixel with their inverse
   variances as weights, ``f = sum(w_k f_k) / sum(w_k)``, ``w = sum(w_k)``;
   a grid pixel no part covers keeps weight 0;
3. the coverage thresholds of the settings are applied to the combination:
   ``NO_WAVELENGTH_OVERLAP`` when the parts' ranges together cover less than
   ``min_overlap_fraction`` of the grid, ``TOO_FEW_GOOD_PIXELS`` when less
   than ``min_good_fraction`` of it has weight.

A part that is unusable as input (``BAD_INPUT``: no spectral axis, a bad
uncertainty, medium or LSF...) makes the whole star ``BAD_INPUT``, with a
message naming the part; so does a star some of whose parts have
uncertainties and others not (their weights could not be compared). A part
without good pixels on the grid (all masked, or outside the grid) adds
nothing. The other flags of the parts (``NO_UNCERTAINTY``,
``RESOLUTION_ASSUMED``...) are carried to the row. The row's ``snr`` is the
median of the parts' S/N weighted by their numbers of good grid pixels, its
``rv`` the mean of the parts' radial velocities with the same weights (the
same value when the parts share one, as they do unless set otherwise).
"""

import numpy as np
from astropy import units as u
from specutils import Spectrum, SpectrumList

from ..flags import FATAL, LabelFlag

__all__ = ["SpectrumParts"]


class SpectrumParts(SpectrumList):
    """The parts of **one** star (CCDs, echelle orders): one row in `prepare`.

    A `~specutils.SpectrumList` of 1-D `~specutils.Spectrum` objects, each on
    its own spectral axis, with its own uncertainty, mask and ``meta``
    (``medium``, ``resolution``/``lsf_fwhm``) and ``radial_velocity``. Where
    a plain `~specutils.SpectrumList` is a list of stars (one row each), a
    `SpectrumParts` gives one row, combined on the model grid (see
    `stellarml.spectra.parts`). A list of `SpectrumParts` is a list of stars.

    Parameters
    ----------
    parts : iterable of `~specutils.Spectrum`
        At least one 1-D spectrum.

    Raises
    ------
    TypeError
        If a part is not a `~specutils.Spectrum` (a nested list, a
        `SpectrumParts`...).
    ValueError
        If there is no part, or a part is not 1-D.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from specutils import Spectrum
    >>> from stellarml.spectra import SpectrumParts
    >>> wave = np.linspace(5000.0, 5100.0, 200)
    >>> blue = Spectrum(flux=np.ones(200) * u.Jy, spectral_axis=wave * u.AA)
    >>> red = Spectrum(flux=np.ones(200) * u.Jy, spectral_axis=(wave + 100.0) * u.AA)
    >>> star = SpectrumParts([blue, red])
    >>> len(star)
    2
    """

    def __init__(self, parts=()):
        parts = list(parts)
        if not parts:
            raise ValueError("SpectrumParts needs at least one spectrum")
        for k, part in enumerate(parts):
            if not isinstance(part, Spectrum):
                raise TypeError(
                    f"part {k} of SpectrumParts is a {type(part).__name__}; each part must be "
                    "a 1-D specutils Spectrum"
                )
            if part.flux.ndim != 1:
                raise ValueError(
                    f"part {k} of SpectrumParts has flux of shape {part.flux.shape}; each part "
                    "must be a 1-D spectrum (a 2-D batch is several stars)"
                )
        super().__init__(parts)

    def __repr__(self):
        return f"<SpectrumParts of one star: {len(self)} parts>"


def _weighted_median(values, weights):
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return np.nan
    v, w = values[ok], weights[ok]
    order = np.argsort(v)
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, 0.5 * cum[-1])])


def _percent(x):
    return f"{100.0 * x:.0f}%"


def _combine_parts(label, batch, covered, settings, out, max_masked_fraction):
    """Fill ``out`` (a one-row `PreparedBatch`) from the prepared rows of one star's parts.

    ``batch`` holds one row per part, prepared without coverage thresholds;
    ``covered`` (npix,) bool marks the grid pixels inside at least one part's
    wavelength range; ``settings`` are the model's (with its thresholds);
    ``max_masked_fraction`` is preparation's limit of ``MANY_MASKED_PIXELS``.
    """
    npix = settings.wavelength.size
    nparts = len(batch)
    flags = np.asarray(batch.flags, dtype=np.int64)
    fatal = (flags & int(FATAL)) != 0
    bad = np.flatnonzero(fatal & ((flags & int(LabelFlag.BAD_INPUT)) != 0))
    # a part covers only some of the grid, so its own MANY_MASKED_PIXELS says nothing
    # about the star: the bit is decided below on the combined parts
    per_part = ~int(FATAL) & ~int(LabelFlag.MANY_MASKED_PIXELS)
    nonfatal = int(np.bitwise_or.reduce(flags & per_part)) if flags.size else 0
    out.flags[0] = nonfatal
    out.rv[0] = batch.rv[0] if len(batch) else 0.0

    def fail(bit, message):
        out.flags[0] |= int(bit)
        out.messages[0] = f"{label}: {message}"
        return out

    if bad.size:
        out.flags[0] |= int(LabelFlag.BAD_INPUT)
        out.messages[0] = batch.messages[bad[0]]
        return out
    no_unc = (flags & int(LabelFlag.NO_UNCERTAINTY)) != 0
    if no_unc.any() and not no_unc.all():
        return fail(
            LabelFlag.BAD_INPUT,
            f"parts {np.flatnonzero(no_unc).tolist()} have no uncertainties and the others "
            "have: their weights cannot be combined (give every part uncertainties, or none)",
        )
    used = ~fatal
    ivar = np.where(used[:, None], batch.ivar.astype(np.float64), 0.0)
    flux = batch.flux.astype(np.float64)
    weight = ivar.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        combined = np.where(weight > 0, (ivar * flux).sum(axis=0) / weight, 0.0)
    n_good = np.count_nonzero(ivar > 0, axis=1).astype(np.float64)
    out.snr[0] = _weighted_median(np.asarray(batch.snr, dtype=np.float64), n_good)
    if n_good.sum() > 0:
        out.rv[0] = float(np.sum(n_good * batch.rv) / n_good.sum())
    overlap = covered.mean()
    good_frac = np.count_nonzero(weight > 0) / npix
    if overlap < settings.min_overlap_fraction:
        return fail(
            LabelFlag.NO_WAVELENGTH_OVERLAP,
            f"its {nparts} parts together cover {_percent(overlap)} of the model grid "
            f"({settings.wavelength[0].to_value(u.AA):.1f}-"
            f"{settings.wavelength[-1].to_value(u.AA):.1f} Angstrom, {settings.medium}); at "
            f"least {_percent(settings.min_overlap_fraction)} is needed",
        )
    if good_frac < settings.min_good_fraction:
        return fail(
            LabelFlag.TOO_FEW_GOOD_PIXELS,
            f"only {_percent(good_frac)} of the model grid has good pixels in its "
            f"{nparts} parts; at least {_percent(settings.min_good_fraction)} are needed",
        )
    # pixels inside the parts' ranges that no part gives data to; the grid between
    # the parts (an instrument's windows) is not counted
    if np.count_nonzero(covered & (weight <= 0)) / npix > max_masked_fraction:
        out.flags[0] |= int(LabelFlag.MANY_MASKED_PIXELS)
    out.flux[0] = combined.astype(np.float32)
    out.ivar[0] = weight.astype(np.float32)
    return out


class _PartsBlock:
    """The parts of one star in `prepare`'s list of blocks: one row, prepared later."""

    nrows = 1
    error = None
    rv = 0.0

    def __init__(self, label, parts):
        self.label = label
        self.parts = parts
