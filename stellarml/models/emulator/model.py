"""`EmulatorModel`: a `~stellarml.models.LabelModel` that fits spectra with an emulator.

The model holds a `~stellarml.models.emulator.SpectrumEmulator`, the
preparation settings that put spectra on its grid, the fitter to use
(`stellarml.fitting`: ``"gradient"``, ``"cmaes"`` or ``"mcmc"``) with its
settings, and the fit options (radial velocity, continuum, priors, bounds).
Its posteriors are the fits' (`~stellarml.fitting.FitResult.to_posterior`):
a mean and covariance, or MCMC draws, with the ``chi2``, ``dof`` and
``crlb`` diagnostics and the ``FIT_NOT_CONVERGED`` flag.

Emulator grids with gaps (APOGEE's three detectors) are handled by preparing
spectra on the gap-free ln-lambda grid that contains every emulator pixel
and fitting only the emulator's pixels.
"""

import copy

import numpy as np

from ...fitting import FITTERS, make_fitter
from ...labels import get_label
from ...posterior import LabelPosterior
from ...spectra import PreparationSettings
from ..base import LabelModelBase

__all__ = ["EmulatorModel", "lattice_grid"]

#: Options of the fits (passed to the fitter's call).
FIT_OPTIONS = ("rv", "continuum_degree", "priors", "bounds", "model_error")


def lattice_grid(wavelength, *, tol=1e-3):
    """The uniform ln-lambda grid through every pixel of ``wavelength`` (gaps filled).

    Parameters
    ----------
    wavelength : array-like
        ``(npix,)`` increasing wavelengths [Angstrom] that lie on a common
        ln-lambda lattice (its step is the smallest step of the array), with
        gaps allowed.
    tol : float, optional
        Largest distance of a pixel from the lattice, in steps.

    Returns
    -------
    grid : `numpy.ndarray`
        ``(ngrid,)`` [Angstrom], uniform in ln lambda, from the first to the
        last pixel.
    pixels : `numpy.ndarray`
        ``(npix,)`` indices of the pixels in ``grid``.

    Raises
    ------
    ValueError
        If the pixels are not on one ln-lambda lattice.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.models.emulator.model import lattice_grid
    >>> w = 5000.0 * np.exp(1e-4 * np.array([0, 1, 2, 5, 6]))
    >>> grid, pixels = lattice_grid(w)
    >>> grid.size, pixels.tolist()
    (7, [0, 1, 2, 5, 6])
    """
    w = np.asarray(wavelength, dtype=np.float64)
    if w.ndim != 1 or w.size < 2 or not np.all(np.diff(w) > 0):
        raise ValueError("wavelength must be a 1-D increasing array of at least 2 values")
    u = np.log(w)
    step = float(np.min(np.diff(u)))
    k = (u - u[0]) / step
    pixels = np.round(k).astype(np.int64)
    off = np.abs(k - pixels).max()
    if off > tol:
        raise ValueError(
            f"the emulator's pixels are not on one ln-lambda lattice (a pixel is {off:.3g} steps "
            "off): give EmulatorModel a preparation whose grid contains them"
        )
    grid = np.exp(u[0] + step * np.arange(pixels[-1] + 1))
    return grid, pixels


def _pixels_in(grid, wavelength, tol=1e-3):
    """Indices of ``wavelength`` in ``grid`` (each within ``tol`` of a step)."""
    ug, uw = np.log(grid), np.log(np.asarray(wavelength, dtype=np.float64))
    idx = np.clip(np.searchsorted(ug, uw), 1, ug.size - 1)
    idx = np.where(np.abs(uw - ug[idx - 1]) < np.abs(uw - ug[idx]), idx - 1, idx)
    step = np.median(np.diff(ug))
    if np.abs(uw - ug[idx]).max() > tol * step or np.unique(idx).size != idx.size:
        raise ValueError(
            "the preparation grid does not contain every emulator pixel: build it with "
            "stellarml.models.emulator.model.lattice_grid(emulator.wavelength)"
        )
    return idx


class EmulatorModel(LabelModelBase):
    """Labels by fitting an emulator to each spectrum (PhDLspec-style forward modelling).

    Parameters
    ----------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
        The labels -> normalised spectrum model; its ``label_names`` are the
        model's labels (registered in `stellarml.labels`).
    name : str, optional
        Model name (written to output tables).
    fitter : {"gradient", "cmaes", "mcmc"}, optional
        The default fitting method (`stellarml.derive_labels`'s ``method=``
        overrides it per call).
    fitter_settings : dict, optional
        ``{method: {setting: value}}``: constructor arguments of each
        fitter (e.g. ``{"gradient": {"n_starts": 8}}``).
    fit_options : dict, optional
        Options of every fit: ``rv`` (None, or ``(vmin, vmax)`` km/s to fit
        a residual radial velocity), ``continuum_degree`` (None, or the
        degree of a multiplicative Legendre continuum, profiled out),
        ``priors`` (``{label: (mean, sigma)}``) and ``bounds``
        (``{label: (lo, hi)}``), in physical units, and ``model_error`` (the
        emulator's own error, a standard deviation in normalised flux per
        emulator pixel or one scalar, added in quadrature to the noise).
    preparation : `~stellarml.spectra.PreparationSettings`, optional
        How spectra are put on the grid; default: the emulator's grid (gaps
        filled, see `lattice_grid`) with ``medium`` and ``resolution``. A
        given grid must contain every emulator pixel.
    medium : {"vacuum", "air"}, optional
        Medium of the emulator's wavelengths (for the default preparation).
    resolution : float, optional
        Resolving power of the emulator's spectra (default preparation;
        None: no LSF matching).
    calibration : `~stellarml.calibration.LabelCalibration`, optional
        Applied by `stellarml.derive_labels`.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.models.emulator import EmulatorModel, PayneEmulator
    >>> rng = np.random.default_rng(0)
    >>> wave = 5000.0 * np.exp(1e-4 * np.arange(300))
    >>> emu = PayneEmulator(rng.normal(size=(300, 3, 2)), rng.normal(size=(300, 3)),
    ...                     0.1 * rng.normal(size=(300, 3)), np.ones(300), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], wave)
    >>> model = EmulatorModel(emu, name="toy")
    >>> model.label_names, model.preparation.wavelength.size
    (('teff', 'logg'), 300)
    """

    method = "emulator"
    #: Fitting methods `_posterior` accepts as ``method=``.
    supported_methods = tuple(FITTERS)

    def __init__(
        self,
        emulator,
        *,
        name="emulator",
        fitter="gradient",
        fitter_settings=None,
        fit_options=None,
        preparation=None,
        medium="vacuum",
        resolution=None,
        calibration=None,
    ):
        self.emulator = emulator
        self.name = str(name)
        self.fitter = self._check_method(fitter)
        settings = {k: dict(v) for k, v in dict(fitter_settings or {}).items()}
        for method, values in settings.items():
            self._check_method(method)
            make_fitter(method, **values)  # the settings are checked now
        self.fitter_settings = settings
        options = dict(fit_options or {})
        unknown = sorted(set(options) - set(FIT_OPTIONS))
        if unknown:
            raise ValueError(f"unknown fit_options {unknown}; known: {', '.join(FIT_OPTIONS)}")
        self.fit_options = options
        self.label_specs = tuple(get_label(n) for n in emulator.label_names)
        wave = np.asarray(emulator.wavelength, dtype=np.float64)
        if preparation is None:
            grid, pixels = lattice_grid(wave)
            preparation = PreparationSettings(grid, medium=medium, resolution=resolution)
        else:
            if not isinstance(preparation, PreparationSettings):
                preparation = PreparationSettings.from_dict(dict(preparation))
            pixels = _pixels_in(preparation.wavelength.to_value("AA"), wave)
        self.preparation = preparation
        self.pixels = pixels
        self.calibration = calibration
        self.provenance_ = {}

    def _check_method(self, method):
        if method not in FITTERS:
            raise ValueError(
                f"unknown fitting method {method!r}; choose one of "
                f"{', '.join(repr(m) for m in FITTERS)}"
            )
        return method

    def make_fitter(self, method=None):
        """A new fitter for ``method`` (default `fitter`) with this model's settings."""
        method = self._check_method(self.fitter if method is None else method)
        return make_fitter(method, **self.fitter_settings.get(method, {}))

    def fit_prepared(self, flux, ivar, *, method=None, device="cpu", **options):
        """Fit spectra on the preparation grid; returns a `~stellarml.fitting.FitResult`.

        Parameters
        ----------
        flux, ivar : array-like
            ``(n, ngrid)`` on ``preparation.wavelength`` (only the emulator's
            pixels are used).
        method : str, optional
            Fitting method (default `fitter`).
        device : str or `torch.device`, optional
            Where the emulator runs.
        **options
            Override the model's `fit_options` (and ``init``).
        """
        from ..._utils import resolve_device

        flux = np.asarray(flux, dtype=np.float64)
        ivar = np.asarray(ivar, dtype=np.float64)
        ngrid = self.preparation.wavelength.size
        if flux.ndim != 2 or flux.shape[1] != ngrid or ivar.shape != flux.shape:
            raise ValueError(
                f"flux and ivar must be (n, {ngrid}) on the model's preparation grid, got "
                f"{flux.shape} and {ivar.shape}"
            )
        self.emulator.to(resolve_device(device))
        kwargs = {**self.fit_options, **options}
        fitter = self.make_fitter(method)
        return fitter(self.emulator, flux[:, self.pixels], ivar[:, self.pixels], **kwargs)

    def _posterior(self, batch, *, device, batch_size, method=None):
        n = len(batch.flux)
        parts = []
        for i in range(0, max(n, 1), batch_size):
            result = self.fit_prepared(
                batch.flux[i : i + batch_size],
                batch.ivar[i : i + batch_size],
                method=method,
                device=device,
            )
            parts.append(result.to_posterior())
        return parts[0] if len(parts) == 1 else LabelPosterior.concatenate(parts)

    def _describe_method(self):
        emu = self.emulator
        return {
            "emulator": {
                "class": type(emu).__name__,
                "n_labels": int(emu.n_labels),
                "n_pixels": int(emu.n_pixels),
                "label_lo": [float(v) for v in emu.label_lo.cpu()],
                "label_hi": [float(v) for v in emu.label_hi.cpu()],
            },
            "fitter": self.fitter,
            "fitter_settings": copy.deepcopy(self.fitter_settings),
            "fit_options": {k: _plain(v) for k, v in self.fit_options.items()},
        }

    def _table_meta_method(self):
        return {"model_fitter": self.fitter, "model_emulator": type(self.emulator).__name__}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
