"""Models for the instrument at hand: a model grid made of an instrument's wavelength windows.

An instrument that records a star in several windows (the four HERMES cameras
of GALAH, a set of echelle orders) gets a model of its own from the synthetic
library with the REMAP recipe (`stellarml.recipes.remap`): its
``[preparation]`` table gives the windows instead of ``wavelength_min`` and
``wavelength_max``, either

``windows = [[lo, hi], ...]``
    Wavelength windows [Angstrom, in the ``medium`` of the preparation],
    increasing and not overlapping; or
``windows_from = ["file", ...]``
    Spectrum files (anything `stellarml.io.files.read_spectrum_file` reads,
    e.g. one GALAH camera file each, or one CARMENES file for all its orders):
    each spectrum's first and last pixel make a window, converted from its
    ``meta["medium"]`` (vacuum when not given) to the preparation's medium;
    windows that overlap are merged.

and, as for any REMAP configuration, ``dloglam`` (the step in ln lambda) and
``resolution`` (R of the model: inputs are degraded to it). The grid is one
grid uniform in ln lambda from the first window's start to the last window's
end (stellarml's grids are contiguous): its pixels between the windows are
given no data in training (the synthetic spectra are masked there before
preparation, exactly as an instrument's spectrum has no data there) and so
carry zero weight. Unless the table sets them, ``min_overlap_fraction`` and
``min_good_fraction`` are half the share of the grid inside the windows
(`DEFAULT_COVERAGE_SHARE`): a star whose parts cover half of the windows is
analysed. The windows are recorded in the model's provenance (its
``config``).

Limitation: the model does not know its windows at inference. A spectrum with
data between the windows (another instrument's) is given weight there,
where the network saw none in training; use such a model for its instrument.
"""

import numpy as np

__all__ = [
    "DEFAULT_COVERAGE_SHARE",
    "check_windows",
    "mask_outside_windows",
    "preparation_windows",
    "window_fraction",
    "windows_from_spectra",
]

#: ``min_overlap_fraction`` and ``min_good_fraction`` of a windowed grid, as a share of
#: the grid's fraction inside the windows (stellarml's choice).
DEFAULT_COVERAGE_SHARE = 0.5


def check_windows(windows, where="[preparation] windows"):
    """Validate wavelength windows.

    Parameters
    ----------
    windows : sequence of (lo, hi)
        Windows [Angstrom].
    where : str
        Named in the error messages.

    Returns
    -------
    windows : `numpy.ndarray`
        ``(n, 2)`` float64 [Angstrom].

    Raises
    ------
    ValueError
        If ``windows`` is not a non-empty list of ``[lo, hi]`` pairs of finite
        positive numbers with ``lo < hi``, increasing and not overlapping (the
        message names the offending window).

    Examples
    --------
    >>> from stellarml.recipes.instrument import check_windows
    >>> check_windows([[4700, 4900], [5600, 5900]])
    array([[4700., 4900.],
           [5600., 5900.]])
    >>> try:
    ...     check_windows([[4700.0, 4900.0], [4850.0, 5000.0]])
    ... except ValueError as err:
    ...     print(err)
    [preparation] windows: window 1 [4850.0, 5000.0] starts before window 0 [4700.0, 4900.0]
    ends; give increasing, non-overlapping windows
    """
    if isinstance(windows, str | bytes) or not hasattr(windows, "__len__") or not len(windows):
        raise ValueError(f"{where} must be a non-empty list of [lo, hi] pairs [Angstrom]")
    out = []
    for k, window in enumerate(windows):
        try:
            lo, hi = (float(x) for x in window)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: window {k} is {window!r}; each window must be [lo, hi] [Angstrom]"
            ) from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0):
            raise ValueError(f"{where}: window {k} [{lo}, {hi}] must be finite and positive")
        if lo >= hi:
            raise ValueError(f"{where}: window {k} [{lo}, {hi}] must have lo < hi")
        if out and lo < out[-1][1]:
            raise ValueError(
                f"{where}: window {k} [{lo}, {hi}] starts before window {k - 1} "
                f"[{out[-1][0]}, {out[-1][1]}] ends; give increasing, non-overlapping windows"
            )
        out.append((lo, hi))
    return np.asarray(out, dtype=np.float64)


def windows_from_spectra(spectra, medium):
    """Windows covered by spectra: each spectrum's first and last pixel, merged where they overlap.

    Parameters
    ----------
    spectra : sequence of `~specutils.Spectrum`
        1-D spectra (e.g. the parts of one star).
    medium : {'air', 'vacuum'}
        Medium of the returned windows; each spectrum's ``meta["medium"]``
        (default vacuum) is converted to it.

    Returns
    -------
    windows : `numpy.ndarray`
        ``(n, 2)`` [Angstrom], increasing.

    Raises
    ------
    ValueError
        If ``spectra`` is empty.

    Examples
    --------
    Two overlapping air spectra make one window; a vacuum one is converted to air:

    >>> import numpy as np, astropy.units as u
    >>> from specutils import Spectrum
    >>> from stellarml.recipes.instrument import windows_from_spectra
    >>> def part(lo, hi, medium):
    ...     wave = np.linspace(lo, hi, 20) * u.AA
    ...     return Spectrum(flux=np.ones(20) * u.Jy, spectral_axis=wave, meta={"medium": medium})
    >>> parts = [part(6000, 6100, "vacuum"), part(5000, 5100, "air"), part(5050, 5200, "air")]
    >>> np.round(windows_from_spectra(parts, "air"), 2)
    array([[5000.  , 5200.  ],
           [5998.34, 6098.31]])
    """
    from ..spectra.prepare import _to_medium, _wave_angstrom

    ranges = []
    for spec in spectra:
        wave = _wave_angstrom(spec.spectral_axis, "spectral axis")
        meta = spec.meta if isinstance(spec.meta, dict) else {}
        own = str(meta.get("medium", "vacuum")).lower()
        lo, hi = _to_medium(np.array([np.min(wave), np.max(wave)]), own, medium)
        ranges.append((float(lo), float(hi)))
    if not ranges:
        raise ValueError("no spectra to take windows from")
    ranges.sort()
    merged = [list(ranges[0])]
    for lo, hi in ranges[1:]:
        if lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return np.asarray(merged, dtype=np.float64)


def preparation_windows(prep):
    """The windows of a ``[preparation]`` table, or None for a plain wavelength range.

    Parameters
    ----------
    prep : dict
        The ``[preparation]`` table.

    Returns
    -------
    windows : `numpy.ndarray` or None
        ``(n, 2)`` [Angstrom, in the table's ``medium``].

    Raises
    ------
    ValueError
        If the table mixes ``windows``, ``windows_from`` and
        ``wavelength_min``/``wavelength_max``, or gives none of them, or a
        window is invalid, or a ``windows_from`` file cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.recipes.instrument import preparation_windows
    >>> print(preparation_windows({"wavelength_min": 4700.0, "wavelength_max": 5900.0}))
    None
    >>> preparation_windows({"windows": [[4700.0, 4900.0], [5600.0, 5900.0]]})
    array([[4700., 4900.],
           [5600., 5900.]])

    The four HERMES cameras of a GALAH star, one file each, in air:

    >>> files = [str(data_dir / "galah" / f"131216002601003{ccd}.fits") for ccd in (1, 2, 3, 4)]
    >>> np.round(preparation_windows({"windows_from": files, "medium": "air"}))
    array([[4714., 4902.],
           [5650., 5874.],
           [6477., 6736.],
           [7586., 7887.]])
    """
    given = [k for k in ("windows", "windows_from") if k in prep]
    plain = [k for k in ("wavelength_min", "wavelength_max") if k in prep]
    if len(given) > 1 or (given and plain):
        raise ValueError(
            f"[preparation] gives {' and '.join(given + plain)}; give the grid one way: "
            "windows, windows_from, or wavelength_min and wavelength_max"
        )
    if not given:
        missing = [k for k in ("wavelength_min", "wavelength_max") if k not in prep]
        if missing:
            raise ValueError(
                f"[preparation] lacks {', '.join(missing)} (or give windows or windows_from)"
            )
        return None
    if "windows" in prep:
        return check_windows(prep["windows"])
    files = prep["windows_from"]
    if isinstance(files, str) or not isinstance(files, list) or not files:
        raise ValueError("[preparation] windows_from must be a non-empty list of spectrum files")
    from ..io.files import read_spectrum_file

    spectra = []
    for path in files:
        try:
            read = read_spectrum_file(path)
        except Exception as exc:
            raise ValueError(
                f"[preparation] windows_from: cannot read {path}: {type(exc).__name__}: {exc}"
            ) from None
        spectra.extend(read if isinstance(read, list) else [read])
    medium = str(prep.get("medium", "vacuum")).lower()
    return check_windows(windows_from_spectra(spectra, medium), "[preparation] windows_from")


def window_fraction(grid, windows):
    """Share of the grid's pixels whose centres lie inside the windows.

    Parameters
    ----------
    grid : `numpy.ndarray`
        Pixel centres [Angstrom].
    windows : `numpy.ndarray`
        ``(n, 2)`` [Angstrom].

    Returns
    -------
    fraction : float
        Between 0 and 1.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.recipes.instrument import window_fraction
    >>> from stellarml.spectra import log_lambda_grid
    >>> grid = log_lambda_grid(4700.0, 5900.0, 3e-4)
    >>> windows = np.array([[4700.0, 4900.0], [5600.0, 5900.0]])
    >>> print(grid.size, round(window_fraction(grid, windows), 3))
    758 0.412
    """
    return float(_inside(np.asarray(grid, dtype=np.float64), windows).mean())


def _inside(wave, windows):
    inside = np.zeros(wave.shape, dtype=bool)
    for lo, hi in windows:
        inside |= (wave >= lo) & (wave <= hi)
    return inside


def mask_outside_windows(library, windows, medium):
    """Give a library's pixels outside the windows no data (NaN flux), in place.

    Preparation (`stellarml.spectra.prepare_arrays`) gives non-finite flux
    zero weight, so the library's prepared spectra have data only inside the
    windows, as an instrument's spectra do.

    Parameters
    ----------
    library : `~stellarml.libraries.SpectralLibrary`
        Changed in place (its flux array); ``meta["windows"]`` records the windows.
    windows : `numpy.ndarray`
        ``(n, 2)`` [Angstrom, in ``medium``].
    medium : {'air', 'vacuum'}
        Medium of ``windows`` (converted to the library's).

    Returns
    -------
    library : `~stellarml.libraries.SpectralLibrary`
        The same object.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.libraries import SpectralLibrary
    >>> from stellarml.recipes.instrument import mask_outside_windows
    >>> lib = SpectralLibrary.from_arrays(
    ...     {"teff": [5000.0, 6000.0]}, np.arange(5000.0, 5010.0), np.ones((2, 10)))
    >>> _ = mask_outside_windows(lib, np.array([[5002.0, 5004.5], [5007.0, 5008.0]]), "vacuum")
    >>> lib.flux[0]
    array([nan, nan,  1.,  1.,  1., nan, nan,  1.,  1., nan])
    >>> lib.meta["windows"]
    {'angstrom': [[5002.0, 5004.5], [5007.0, 5008.0]], 'medium': 'vacuum'}
    """
    from ..spectra.prepare import _to_medium

    own = _to_medium(np.asarray(windows, dtype=np.float64).ravel(), medium, library.medium)
    outside = ~_inside(np.asarray(library.wavelength.value, dtype=np.float64), own.reshape(-1, 2))
    library.flux[:, outside] = np.nan
    library.meta["windows"] = {
        "angstrom": np.asarray(windows, dtype=np.float64).tolist(),
        "medium": medium,
    }
    return library
