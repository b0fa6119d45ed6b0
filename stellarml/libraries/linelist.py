"""`LineListLibrary`: a many-label synthetic library from a polynomial emulator and a line list.

.. warning::

   This library is an **approximation for developing and testing methods** (many-label
   emulators, gradient priors, fitters, Cramér–Rao bounds). It is not a spectrum synthesis
   code. Real work uses real synthetic grids: model atmospheres (Kurucz/ATLAS, MARCS)
   with a real radiative-transfer synthesis code (SYNTHE, Turbospectrum, MOOG, Korg).

What it does
------------
The base spectrum is a `PolynomialEmulatorLibrary` (e.g. the Doppler cool-star emulator,
labels Teff, log g, [Fe/H]); it holds the lines of a solar-scaled mixture. On top of it,
every kept line of a modelled element X (neutral or singly ionised, from a real line list
such as GALAH DR3) adds optical depth, and the flux is modulated relative to the solar
mixture::

    tau(lambda) = sum_lines tau_line * phi_line(lambda)          (per pixel)
    A = d_max * tau / (1 + tau)
    flux = base(teff, logg, fe_h) * [1 - (A(labels) - A(ref))]

where ``phi`` is a line's profile (peak 1) and ``ref`` are the same Teff, log g, [Fe/H] with
every [X/Fe] = 0 and the reference microturbulence ``vmicro_ref``. At the solar mixture and
``vmicro = vmicro_ref`` the library returns the base spectrum exactly; raising [X/Fe]
deepens X's lines, lowering it makes them shallower. Summing the optical depths before
saturating makes blends and the many hyperfine components of a line (e.g. Eu II 6645 A)
saturate together, and the factor stays between ``1 - d_max`` and ``1 + d_max``: the flux
stays positive and bounded where the base has a line that this model makes weaker (a ratio
``(1 - A) / (1 - A_ref)`` would blow up where this model's reference line is deeper than
the base's). Where this model's reference line is deeper than the base's line, lowering
[X/Fe] can still lift the flux above the base, even above 1 (e.g. Eu II 6645 A in hot
stars); nothing is clipped, to keep the generator smooth. Fe lines are not modulated: they
are in the base spectrum. The base polynomial
itself is only as good as its training grid: near the edges of the box (e.g. Teff < 3700 K
at log g < 0.5) it gives unphysical fluxes, even negative ones, which this library
inherits.

The line model (all logarithms base 10; theta = 5040 K / Teff; energies in eV):

- **Electron pressure** (dyn cm^-2): ``log Pe = 1.2 + (log g - 4.438) / 3``, the
  ``Pe ~ g^(1/3)`` scaling of H^- dominated cool photospheres (Gray 2005, *The Observation
  and Analysis of Stellar Photospheres*, ch. 9), anchored at the solar photosphere's
  ``log Pe ~ 1.2`` near tau = 2/3. It does not depend on Teff or the metallicity.
- **Saha ionisation** (Gray 2005, eq. 1.20):
  ``log(N_II / N_I) = log(U_II / U_I) + 2.5 log T - theta chi_ion - log Pe - 0.1762``; only
  stages I and II, so ``f_I = 1 / (1 + N_II/N_I)`` and ``f_II = 1 - f_I``. The partition
  functions ``U`` are constants, approximate values near 5000 K (`ELEMENT_DATA`).
- **Continuum opacity**: H^- bound-free, ``log kappa = log Pe + 2.5 log theta + 0.754
  theta`` + const (Gray 2005, eq. 8.12).
- **Line-centre optical depth** (Boltzmann excitation ``10^(-theta E_low)``)::

      log tau0 = C + log gf + (A_sun(X) - 12 + [X/Fe] + [Fe/H]) + log f_stage - log U_stage
                 - theta E_low - log kappa + log(lambda / 5000 A) - log(b / 1 km/s)

  with the Doppler parameter ``b = sqrt(2 k T / m_X + vmicro^2)``. The constant ``C`` is set
  so that the weak solar line Fe I 6082.71 A (log gf = -3.573, E_low = 2.223 eV) has the
  central depth 0.41 it has in the Doppler emulator's solar spectrum.
- **Broadening and saturation**: the absorption profile is a Gaussian of 1/e half-width
  ``B = sqrt(b^2 + vbroad^2)``, where ``vbroad`` is a fixed extra broadening (macroturbulence
  and the like, default 5 km/s, which matches the line cores of the base spectrum), averaged
  over each pixel (with ``erf``). Its central optical depth is diluted by the broadening,
  ``tau_line = tau0 b / B``, so an isolated line has the curve of growth::

      depth = d_max tau_line / (1 + tau_line),      d_max = 0.9

  Weak lines have ``depth ~ d_max tau_line`` (their equivalent width is independent of
  ``vmicro`` and ``vbroad``); strong lines saturate towards ``d_max`` and grow in width
  (microturbulence then raises their equivalent width). Pressure (damping) wings are not
  modelled; the slow approach of ``tau / (1 + tau)`` to ``d_max`` stands in for them. With
  ``1 - exp(-tau)`` a strong Gaussian line would be pinned at ``d_max`` and stop answering
  its abundance, while real strong lines keep growing through their wings.

Solar abundances are Asplund, Grevesse, Sauval & Scott 2009, ARA&A 47, 481 (Table 1,
photospheric values; meteoritic for none of the elements used here).

Everything is written in torch, so ``d flux / d label`` is exact by automatic
differentiation (`LineListLibrary.jacobian`). Each line is evaluated only on a window of a
few widths around it; the per-line optical depths are added to the pixels with a
scatter-add.
"""

import math
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..labels import get_label
from .base import SpectralLibrary, _chunks
from .emulated import (
    DESIGNS,
    PolynomialEmulatorLibrary,
    box_design,
    file_sha256,
    label_values,
)

__all__ = [
    "DEFAULT_ELEMENTS",
    "ELEMENT_DATA",
    "LineList",
    "LineListLibrary",
    "read_galah_linelist",
]

#: Per element: atomic number, solar photospheric abundance A(X) = log(N_X/N_H) + 12
#: (Asplund et al. 2009, ARA&A 47, 481, Table 1), first ionisation energy (eV, NIST ASD),
#: atomic mass (u), and log10 of the partition functions U_I and U_II near 5000 K
#: (approximate, to ~0.2 dex, after the tabulations in Gray 2005, Appendix D), held
#: constant with Teff.
ELEMENT_DATA = {
    "c": (6, 8.43, 11.260, 12.011, 0.97, 0.78),
    "n": (7, 7.83, 14.534, 14.007, 0.61, 0.95),
    "o": (8, 8.69, 13.618, 15.999, 0.94, 0.60),
    "na": (11, 6.24, 5.139, 22.990, 0.31, 0.00),
    "mg": (12, 7.60, 7.646, 24.305, 0.00, 0.31),
    "al": (13, 6.45, 5.986, 26.982, 0.77, 0.00),
    "si": (14, 7.51, 8.152, 28.085, 0.98, 0.76),
    "k": (19, 5.03, 4.341, 39.098, 0.34, 0.00),
    "ca": (20, 6.34, 6.113, 40.078, 0.07, 0.34),
    "sc": (21, 3.15, 6.561, 44.956, 1.08, 1.36),
    "ti": (22, 4.95, 6.828, 47.867, 1.47, 1.75),
    "v": (23, 3.93, 6.746, 50.942, 1.64, 1.58),
    "cr": (24, 5.64, 6.767, 51.996, 0.97, 0.86),
    "mn": (25, 5.43, 7.434, 54.938, 0.81, 0.89),
    "fe": (26, 7.50, 7.902, 55.845, 1.43, 1.63),
    "co": (27, 4.99, 7.881, 58.933, 1.52, 1.46),
    "ni": (28, 6.22, 7.640, 58.693, 1.47, 1.02),
    "cu": (29, 4.19, 7.726, 63.546, 0.36, 0.01),
    "zn": (30, 4.56, 9.394, 65.38, 0.00, 0.30),
    "sr": (38, 2.87, 5.695, 87.62, 0.10, 0.34),
    "y": (39, 2.21, 6.217, 88.906, 1.08, 1.18),
    "zr": (40, 2.58, 6.634, 91.224, 1.53, 1.66),
    "ba": (56, 2.18, 5.212, 137.327, 0.36, 0.62),
    "la": (57, 1.10, 5.577, 138.905, 1.41, 1.47),
    "ce": (58, 1.58, 5.539, 140.116, 2.30, 2.00),
    "nd": (60, 1.42, 5.525, 144.242, 2.00, 2.00),
    "sm": (62, 0.96, 5.644, 150.36, 1.60, 1.80),
    "eu": (63, 0.52, 5.670, 151.964, 0.95, 1.05),
}

#: Elements modelled by default: every element of `ELEMENT_DATA` but Fe (27, so 31 labels,
#: the ~30 of PhDLspec). Each has lines deeper than 1 % at some training point of the base
#: emulator in 3800-7000 Angstrom of the GALAH DR3 line list (which starts at 4676 Angstrom);
#: N, O, K and Eu have only a few, weak ones (most of them deeper than 5 % only in F stars
#: or cool giants), so their labels are barely constrained there.
DEFAULT_ELEMENTS = tuple(e for e in ELEMENT_DATA if e != "fe")

_C_KMS = 299792.458
_TWO_K_OVER_AMU = 2 * 1.380649e-23 / 1.66053906660e-27 / 1e6  # (km/s)^2 per K per u
_LOG_PE_SUN = 1.2
_LOGG_SUN = 4.438
_SUN = (5772.0, _LOGG_SUN, 1.0, 0.0)  # teff, logg, vmicro, fe_h of the calibration
# Calibration line Fe I 6082.71 A and its central depth in the Doppler emulator's solar spectrum.
_ANCHOR = {"wl": 6082.71, "log_gf": -3.573, "e_lo": 2.223, "depth": 0.41}
_LN10 = math.log(10.0)


class LineList:
    """Atomic lines: wavelength, log gf, lower excitation energy, element and ionisation stage.

    Parameters
    ----------
    wavelength : array-like, shape (m,)
        Line-centre wavelengths in Angstrom (in ``medium``).
    log_gf : array-like, shape (m,)
        log10 of the oscillator strength times the statistical weight (dimensionless).
    e_lo : array-like, shape (m,)
        Lower-level excitation energy in eV.
    atomic_number : array-like of int, shape (m,)
        Element of each line.
    ion : array-like of int, shape (m,)
        Ionisation stage: 1 neutral (I), 2 singly ionised (II).
    medium : {"air", "vacuum"}
        Medium of ``wavelength``.
    meta : dict, optional
        Provenance (file, sha256).

    Attributes
    ----------
    wavelength, log_gf, e_lo : numpy.ndarray, shape (m,), float64
        As given [Angstrom, dimensionless, eV].
    atomic_number, ion : numpy.ndarray, shape (m,), int64
        As given.
    medium : str
        Medium of ``wavelength``.
    meta : dict
        A copy of ``meta``.

    Raises
    ------
    ValueError
        If the arrays are not 1-D of one length, have non-finite values, or
        ``medium`` is neither "air" nor "vacuum".

    Examples
    --------
    >>> from stellarml.libraries import LineList
    >>> lines = LineList(
    ...     [5889.951, 6162.173, 6439.075],  # Na I D2, Ca I, Ca I [Angstrom, air]
    ...     [0.108, -0.09, 0.47],
    ...     [0.0, 1.899, 2.526],  # [eV]
    ...     [11, 20, 20],
    ...     [1, 1, 1],
    ...     medium="air",
    ...     meta={"name": "demo"},
    ... )
    >>> print(len(lines), lines)
    3 <LineList 'demo': 3 lines 5890.0-6439.1 Angstrom (air)>
    >>> print(lines.to_medium("vacuum").wavelength.round(2))
    [5891.58 6163.88 6440.85]
    """

    def __init__(self, wavelength, log_gf, e_lo, atomic_number, ion, *, medium="air", meta=None):
        arrays = [np.asarray(a) for a in (wavelength, log_gf, e_lo, atomic_number, ion)]
        m = arrays[0].shape
        if arrays[0].ndim != 1 or any(a.shape != m for a in arrays):
            raise ValueError(
                "line list arrays must be 1-D of one length, got shapes "
                f"{[a.shape for a in arrays]}"
            )
        for name, a in zip(("wavelength", "log_gf", "e_lo"), arrays[:3], strict=True):
            if not np.all(np.isfinite(a.astype(float))):
                raise ValueError(f"line list {name!r} has non-finite values")
        if medium not in ("air", "vacuum"):
            raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
        self.wavelength = arrays[0].astype(np.float64)
        self.log_gf = arrays[1].astype(np.float64)
        self.e_lo = arrays[2].astype(np.float64)
        self.atomic_number = arrays[3].astype(np.int64)
        self.ion = arrays[4].astype(np.int64)
        self.medium = medium
        self.meta = dict(meta or {})

    def __len__(self):
        return self.wavelength.size

    def to_medium(self, medium):
        """The same lines with wavelengths in ``medium`` (IAU/Morton 2000 conversion).

        Parameters
        ----------
        medium : {"air", "vacuum"}
            Target medium.

        Returns
        -------
        linelist : `LineList`
            ``self`` if already in ``medium``, else a converted copy.
        """
        from ..spectra import air_to_vacuum, vacuum_to_air

        if medium not in ("air", "vacuum"):
            raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
        if medium == self.medium:
            return self
        convert = vacuum_to_air if medium == "air" else air_to_vacuum
        return LineList(
            np.asarray(convert(self.wavelength), dtype=np.float64),
            self.log_gf,
            self.e_lo,
            self.atomic_number,
            self.ion,
            medium=medium,
            meta=self.meta,
        )

    def __repr__(self):
        return (
            f"<LineList {self.meta.get('name', '')!r}: {len(self)} lines "
            f"{self.wavelength.min():.1f}-{self.wavelength.max():.1f} Angstrom ({self.medium})>"
        )


def read_galah_linelist(path):
    """Read the atomic lines of the GALAH DR3 line list in Korg's HDF5 layout.

    The file (``linelists/galah_dr3_linelist.h5``: Buder et al. 2021, repackaged by Korg.jl,
    BSD-3) holds per line ``wl`` (vacuum, Angstrom: Korg works in vacuum, and e.g. the
    Ca I line at 6439.075 A in air is stored at 6440.85 A), ``log_gf``, ``E_lo`` (eV), ``formula``
    (m, 3) atomic numbers (a molecule has more than one non-zero entry), ``ionization``
    (1 neutral, 2 singly ionised, 3 doubly ionised) and broadening parameters (unused).
    Molecular lines and stages above II are dropped.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The ``.h5`` file.

    Returns
    -------
    linelist : `LineList`
        Atomic lines of stages I and II, sorted by wavelength, vacuum wavelengths
        (`LineListLibrary` converts them to its base's medium).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If datasets are missing.
    ImportError
        If h5py is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.libraries import read_galah_linelist
    >>> lines = read_galah_linelist(data_dir / "linelists" / "galah_dr3_linelist.h5")
    >>> print(lines)
    <LineList 'galah_dr3_linelist': 19125 lines 4676.3-7927.1 Angstrom (vacuum)>
    >>> print(np.unique(lines.ion), lines.meta["sha256"][:12])  # stages I and II; provenance
    [1 2] ...
    >>> ca = (lines.atomic_number == 20) & (np.abs(lines.wavelength - 6440.85) < 0.05)
    >>> print(np.round(lines.wavelength[ca], 2), np.round(lines.e_lo[ca], 3))  # Ca I [eV]
    [6440.85] [2.526]
    """
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is in the test and "all" extras
        raise ImportError(
            "reading an HDF5 line list needs h5py: pip install h5py (or stellarml[all])"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"line list file not found: {path}")
    keys = ("wl", "log_gf", "E_lo", "formula", "ionization")
    with h5py.File(path, "r") as fh:
        missing = [k for k in keys if k not in fh]
        if missing:
            raise ValueError(f"{path} lacks line-list datasets {missing} (it has {sorted(fh)})")
        data = {k: fh[k][()] for k in keys}
    formula = np.asarray(data["formula"])
    if formula.ndim != 2:
        raise ValueError(f"{path}: 'formula' must be (n_lines, k), got shape {formula.shape}")
    atomic = np.count_nonzero(formula, axis=1) == 1
    keep = atomic & (formula[:, 0] > 0) & np.isin(data["ionization"], (1, 2))
    order = np.argsort(data["wl"][keep], kind="stable")
    return LineList(
        data["wl"][keep][order],
        data["log_gf"][keep][order],
        data["E_lo"][keep][order],
        formula[keep, 0][order],
        data["ionization"][keep][order],
        medium="vacuum",
        meta={"name": path.stem, "source": str(path.resolve()), "sha256": file_sha256(path)},
    )


class LineListLibrary:
    """Generator of many-label synthetic libraries: polynomial base spectrum x element lines.

    **An approximation for development and testing of methods** (the physics and its
    limits are in the docstring of `stellarml.libraries.linelist` and in the "many-label
    line-list library" section of the libraries documentation): real work uses real
    synthetic grids (Kurucz/MARCS atmospheres and a real synthesis code). At the solar
    mixture (every [X/Fe] = 0) and ``vmicro = vmicro_ref`` it returns the base spectrum
    exactly; each [X/Fe] label deepens or weakens the lines of its element from the line
    list with Boltzmann-Saha line strengths and curve-of-growth saturation. Written in
    torch, so the Jacobian ``d flux / d label`` is exact (`jacobian`).

    Labels, in this order: ``teff`` (K), ``logg`` (dex), ``vmicro`` (km/s), ``fe_h`` (dex),
    then ``<x>_fe`` (dex) for each element.

    Parameters
    ----------
    base : `PolynomialEmulatorLibrary`
        Base emulator with labels ``teff``, ``logg``, ``fe_h`` at its native, unbroadened
        resolution (broaden the generated library with `SpectralLibrary.degrade`).
    linelist : `LineList`
        Atomic lines (converted to the base's medium if needed).
    wavelength_range : (lo, hi) `~astropy.units.Quantity` or numbers (Angstrom)
        The window of the base grid to model (e.g. ``(3800, 7000) * u.AA``).
    elements : sequence of str, optional
        Elements (lower-case symbols from `ELEMENT_DATA`, not ``"fe"``), default
        `DEFAULT_ELEMENTS`. Each must have kept lines in the window.
    abundance_range : (float, float), optional
        Box of every [X/Fe] in dex (default -0.5..+0.5).
    vmicro_range : (float, float), optional
        Box of the microturbulence in km/s (default 0.5..3.0).
    vmicro_ref : float, optional
        Microturbulence (km/s) taken for the base spectrum (default 1.0; the Doppler grid does
        not record its own); must lie in ``vmicro_range``.
    vbroad : float, optional
        Fixed extra Gaussian broadening (1/e half-width, km/s) of every line (default 5.0).
    depth_threshold : float, optional
        Keep lines whose central depth exceeds this somewhere in the label box (default 0.01).
    d_max : float, optional
        Saturated central depth of the curve of growth (default 0.9).
    window_widths : float, optional
        Each line is evaluated within this many (largest) 1/e half-widths (default 4).

    Raises
    ------
    ValueError
        For an unknown element, ``"fe"``, an element without lines in the window, a base
        emulator without teff/logg/fe_h, a broadened base, or an empty window.

    Examples
    --------
    >>> lib = LineListLibrary.from_files(
    ...     data_dir / "doppler" / "coolstars_cubic_emulator.npz",
    ...     data_dir / "linelists" / "galah_dr3_linelist.h5",
    ...     wavelength_range=(3800, 7000) * u.AA)  # doctest: +SKIP
    >>> spectra = lib.sample(100, seed=1)  # doctest: +SKIP
    >>> jac = lib.jacobian(spectra.labels[:5])  # doctest: +SKIP
    """

    def __init__(
        self,
        base,
        linelist,
        wavelength_range,
        *,
        elements=DEFAULT_ELEMENTS,
        abundance_range=(-0.5, 0.5),
        vmicro_range=(0.5, 3.0),
        vmicro_ref=1.0,
        vbroad=5.0,
        depth_threshold=0.01,
        d_max=0.9,
        window_widths=4.0,
    ):
        import torch

        if not isinstance(base, PolynomialEmulatorLibrary):
            raise TypeError(f"base must be a PolynomialEmulatorLibrary, got {type(base).__name__}")
        if base.label_names != ["teff", "logg", "fe_h"]:
            raise ValueError(
                f"base emulator must have labels teff, logg, fe_h; got {base.label_names}"
            )
        if base.resolution is not None or base.fwhm is not None:
            raise ValueError(
                "base emulator must be unbroadened (native resolution); degrade the generated "
                "library instead"
            )
        if not isinstance(linelist, LineList):
            raise TypeError(f"linelist must be a LineList, got {type(linelist).__name__}")
        linelist = linelist.to_medium(base.medium)
        elements = [str(e).lower() for e in elements]
        unknown = [e for e in elements if e not in ELEMENT_DATA]
        if unknown:
            known = ", ".join(e for e in ELEMENT_DATA if e != "fe")
            raise ValueError(f"unknown elements {unknown}; known: {known}")
        if "fe" in elements:
            raise ValueError("'fe' is not an [X/Fe] element: iron is the base's fe_h label")
        if len(set(elements)) != len(elements) or not elements:
            raise ValueError(f"elements must be distinct and non-empty, got {elements}")
        for name, rng in (("abundance_range", abundance_range), ("vmicro_range", vmicro_range)):
            lo, hi = (float(v) for v in rng)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"{name} must be finite (lo, hi) with lo < hi, got {rng}")
        if vmicro_range[0] < 0:
            raise ValueError(f"vmicro_range must be >= 0 km/s, got {vmicro_range}")
        for name, value in (("vmicro_ref", vmicro_ref), ("vbroad", vbroad)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0 km/s, got {value}")
        if not vmicro_range[0] <= vmicro_ref <= vmicro_range[1]:
            raise ValueError(
                f"vmicro_ref {vmicro_ref} km/s must lie in vmicro_range {tuple(vmicro_range)}, "
                "so that the base spectrum is inside the box"
            )
        if not 0 < d_max < 1:
            raise ValueError(f"d_max must be in (0, 1), got {d_max}")
        if not depth_threshold > 0:
            raise ValueError(f"depth_threshold must be > 0, got {depth_threshold}")
        if not window_widths > 0:
            raise ValueError(f"window_widths must be > 0, got {window_widths}")

        self.base = base
        self.linelist = linelist
        self.elements = tuple(elements)
        self.vmicro_ref = float(vmicro_ref)
        self.vbroad = float(vbroad)
        self.d_max = float(d_max)
        self.depth_threshold = float(depth_threshold)
        self._names = ["teff", "logg", "vmicro", "fe_h", *(f"{e}_fe" for e in elements)]
        for name in self._names:
            get_label(name)
        box = dict(base.label_ranges)
        self._box = {
            "teff": box["teff"],
            "logg": box["logg"],
            "vmicro": (float(vmicro_range[0]), float(vmicro_range[1])),
            "fe_h": box["fe_h"],
            **{f"{e}_fe": (float(abundance_range[0]), float(abundance_range[1])) for e in elements},
        }
        window = base._window(wavelength_range)
        self._wave = base._wave[window]
        self._theta = base.theta[window]
        step = np.gradient(self._wave)

        # --- candidate lines: modelled elements, centre within a margin of the window
        z_of = {ELEMENT_DATA[e][0]: j for j, e in enumerate(elements)}
        tvmax = self._box["teff"][1]
        light = min(ELEMENT_DATA[e][3] for e in elements)
        b_max = math.sqrt(_TWO_K_OVER_AMU * tvmax / light + self._box["vmicro"][1] ** 2)
        width_max = self._wave[-1] * math.sqrt(b_max**2 + self.vbroad**2) / _C_KMS  # Angstrom
        half = math.ceil(window_widths * width_max / step.min()) + 1
        margin = half * step.max()
        ll = linelist
        sel = (
            np.isin(ll.atomic_number, list(z_of))
            & (ll.wavelength >= self._wave[0] - margin)
            & (ll.wavelength <= self._wave[-1] + margin)
        )
        elem = np.array([z_of[z] for z in ll.atomic_number[sel]], dtype=np.int64)
        self._set_lines(ll.wavelength[sel], ll.log_gf[sel], ll.e_lo[sel], elem, ll.ion[sel] - 1)
        self._calibrate(torch)
        # --- keep the lines deeper than the threshold somewhere in the box
        depth_max = self._max_depth_in_box(torch)
        keep = depth_max > self.depth_threshold
        self._set_lines(
            ll.wavelength[sel][keep],
            ll.log_gf[sel][keep],
            ll.e_lo[sel][keep],
            elem[keep],
            ll.ion[sel][keep] - 1,
        )
        counts = np.bincount(self._line_elem, minlength=len(elements))
        empty = [e for e, c in zip(elements, counts, strict=True) if c == 0]
        if empty:
            raise ValueError(
                f"elements {empty} have no line deeper than {self.depth_threshold:g} in "
                f"{self._wave[0]:.1f}-{self._wave[-1]:.1f} Angstrom anywhere in the label box; "
                "drop them or widen the window"
            )
        # --- pixel windows: (n_lines, 2 half + 1) pixel indices, validity mask, offsets
        centre = np.searchsorted(self._wave, self._line_wl)
        idx = centre[:, None] + np.arange(-half, half + 1)[None, :]
        valid = (idx >= 0) & (idx < self._wave.size)
        idx = np.clip(idx, 0, self._wave.size - 1)
        self._idx = torch.as_tensor(idx)
        self._valid = torch.as_tensor(valid)
        self._offset = self._wave[idx] - self._line_wl[:, None]  # Angstrom
        self._pixstep = step[idx]
        self.meta = {
            "generator": "LineListLibrary",
            "base": dict(base.meta),
            "linelist": dict(linelist.meta),
            "elements": list(elements),
            "n_lines": int(self._line_wl.size),
            "lines_per_element": {e: int(c) for e, c in zip(elements, counts, strict=True)},
            "vmicro_ref": self.vmicro_ref,
            "vbroad": self.vbroad,
            "d_max": self.d_max,
            "depth_threshold": self.depth_threshold,
            "approximation": (
                "Boltzmann-Saha line strengths with a saturating curve of growth on a polynomial "
                "base spectrum; for method development and tests, not for science"
            ),
        }

    @classmethod
    def from_files(cls, emulator_path, linelist_path, wavelength_range, **kwargs):
        """Build from a polynomial-emulator ``.npz`` and a GALAH-layout HDF5 line list.

        Parameters
        ----------
        emulator_path : str or `~pathlib.Path`
            E.g. ``doppler/coolstars_cubic_emulator.npz`` (`PolynomialEmulatorLibrary.from_file`).
        linelist_path : str or `~pathlib.Path`
            E.g. ``linelists/galah_dr3_linelist.h5`` (`read_galah_linelist`).
        wavelength_range : (lo, hi) `~astropy.units.Quantity` or numbers (Angstrom)
            Window to model.
        **kwargs
            Passed to `LineListLibrary`.

        Returns
        -------
        library : `LineListLibrary`
        """
        base = PolynomialEmulatorLibrary.from_file(emulator_path)
        return cls(base, read_galah_linelist(linelist_path), wavelength_range, **kwargs)

    # ------------------------------------------------------------------ setup helpers
    def _set_lines(self, wl, log_gf, e_lo, elem, stage):
        self._tensor_cache = {}
        self._line_wl = np.asarray(wl, dtype=np.float64)
        self._line_elem = np.asarray(elem, dtype=np.int64)
        self._line_stage = np.asarray(stage, dtype=np.int64)
        data = np.array([ELEMENT_DATA[e] for e in self.elements], dtype=np.float64).reshape(-1, 6)
        self._line_loggf = np.asarray(log_gf, dtype=np.float64)
        self._line_elo = np.asarray(e_lo, dtype=np.float64)
        self._line_asun = data[self._line_elem, 1]
        self._line_chi = data[self._line_elem, 2]
        self._line_mass = data[self._line_elem, 3]
        self._line_logu = data[self._line_elem, 4 + self._line_stage]  # stage of the line
        self._line_logu_ratio = data[self._line_elem, 5] - data[self._line_elem, 4]

    def _line_tensors(self, torch, dtype):
        """Per-line constants as tensors of ``dtype`` (cached)."""
        if dtype in self._tensor_cache:
            return self._tensor_cache[dtype]
        f = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
        self._tensor_cache[dtype] = {
            "wl": f(self._line_wl),
            "loggf": f(self._line_loggf),
            "elo": f(self._line_elo),
            "asun": f(self._line_asun),
            "chi": f(self._line_chi),
            "mass": f(self._line_mass),
            "logu": f(self._line_logu),
            "logu_ratio": f(self._line_logu_ratio),
            "ion": torch.as_tensor(self._line_stage == 1),
            "elem": torch.as_tensor(self._line_elem),
        }
        return self._tensor_cache[dtype]

    @staticmethod
    def _log_tau0_raw(lines, teff, logg, vmicro, x_h, torch):
        """log10 tau0 without the calibration constant: (n, n_lines) from (n, 1) labels."""
        theta = 5040.0 / teff
        log_pe = _LOG_PE_SUN + (logg - _LOGG_SUN) / 3.0
        ln_r = _LN10 * (
            lines["logu_ratio"] + 2.5 * torch.log10(teff) - theta * lines["chi"] - log_pe - 0.1762
        )  # ln(N_II / N_I)
        sp = torch.nn.functional.softplus(ln_r)
        ln_f = torch.where(lines["ion"], ln_r - sp, -sp)
        log_kappa = log_pe + 2.5 * torch.log10(theta) + 0.754 * theta
        b2 = _TWO_K_OVER_AMU * teff / lines["mass"] + vmicro**2
        return (
            lines["loggf"]
            + lines["asun"]
            - 12.0
            + x_h
            + ln_f / _LN10
            - lines["logu"]
            - theta * lines["elo"]
            - log_kappa
            + torch.log10(lines["wl"] / 5000.0)
            - 0.5 * torch.log10(b2)
        ), b2

    def _calibrate(self, torch):
        """Set the constant C from the Fe I 6082.71 anchor line at solar parameters."""
        dt = torch.float64
        anchor = {
            "wl": torch.tensor([_ANCHOR["wl"]], dtype=dt),
            "loggf": torch.tensor([_ANCHOR["log_gf"]], dtype=dt),
            "elo": torch.tensor([_ANCHOR["e_lo"]], dtype=dt),
            "asun": torch.tensor([ELEMENT_DATA["fe"][1]], dtype=dt),
            "chi": torch.tensor([ELEMENT_DATA["fe"][2]], dtype=dt),
            "mass": torch.tensor([ELEMENT_DATA["fe"][3]], dtype=dt),
            "logu": torch.tensor([ELEMENT_DATA["fe"][4]], dtype=dt),
            "logu_ratio": torch.tensor([ELEMENT_DATA["fe"][5] - ELEMENT_DATA["fe"][4]], dtype=dt),
            "ion": torch.tensor([False]),
        }
        teff, logg, vmicro, feh = (torch.tensor([[v]], dtype=dt) for v in _SUN)
        raw, b2 = self._log_tau0_raw(anchor, teff, logg, vmicro, feh, torch)
        dilution = torch.sqrt(b2 / (b2 + self.vbroad**2))
        depth = _ANCHOR["depth"]
        tau = depth / (self.d_max - depth)
        self._log_c = float(math.log10(tau) - (raw + torch.log10(dilution)).item())

    def _central_tau(self, lines, teff, logg, vmicro, x_h, torch):
        """Effective central optical depth tau = tau0 b / B and the width B (km/s)."""
        raw, b2 = self._log_tau0_raw(lines, teff, logg, vmicro, x_h, torch)
        big_b2 = b2 + self.vbroad**2
        tau = 10.0 ** (self._log_c + raw) * torch.sqrt(b2 / big_b2)
        return tau, torch.sqrt(big_b2)

    def _max_depth_in_box(self, torch):
        """Largest central depth of every candidate line in the box.

        Over the (Teff, log g) points of the base emulator's training grid (the rectangle's
        corners, e.g. cool supergiants at log g 0, are not all physical and would keep many
        lines that no sampled star shows), at the highest [X/H] and the lowest vmicro.
        """
        dt = torch.float64
        lines = self._line_tensors(torch, dt)
        train = np.unique(self.base.training_labels[:, :2], axis=0)
        tg = torch.as_tensor(train[:, :1], dtype=dt)
        gg = torch.as_tensor(train[:, 1:2], dtype=dt)
        vmin = torch.full_like(tg, self._box["vmicro"][0])
        x_h = torch.full_like(tg, self._box["fe_h"][1] + max(v[1] for v in self._abund_box()))
        best = np.zeros(self._line_wl.size)
        for sl in _chunks(tg.shape[0], 16):
            tau, _ = self._central_tau(lines, tg[sl], gg[sl], vmin[sl], x_h[sl], torch)
            depth = self.d_max * tau / (1 + tau)
            best = np.maximum(best, depth.max(dim=0).values.numpy())
        return best

    def _abund_box(self):
        return [self._box[f"{e}_fe"] for e in self.elements]

    # ------------------------------------------------------------------ properties
    @property
    def label_names(self):
        """Label names in the order of label arrays (list of str)."""
        return list(self._names)

    @property
    def label_units(self):
        """Registry unit of each label (list of `~astropy.units.UnitBase`)."""
        return [get_label(n).unit for n in self._names]

    @property
    def label_ranges(self):
        """``{name: (lo, hi)}``: the label box, registry units (K, dex, km/s)."""
        return dict(self._box)

    @property
    def wavelength(self):
        """Wavelength grid, `~astropy.units.Quantity` (npix,) in Angstrom (base's medium)."""
        return self._wave * u.AA

    @property
    def npix(self):
        """Number of pixels (int)."""
        return self._wave.size

    @property
    def medium(self):
        """Medium of the wavelengths (``"air"`` or ``"vacuum"``)."""
        return self.base.medium

    @property
    def lines(self):
        """The kept lines, `~astropy.table.QTable`: wavelength (Angstrom), element, ion
        (1 or 2), log_gf, e_lo (eV)."""
        return QTable(
            {
                "wavelength": self._line_wl * u.AA,
                "element": np.array(self.elements)[self._line_elem],
                "ion": self._line_stage + 1,
                "log_gf": self._line_loggf,
                "e_lo": self._line_elo * u.eV,
            }
        )

    def __repr__(self):
        return (
            f"<LineListLibrary: {self.npix} px {self._wave[0]:.1f}-{self._wave[-1]:.1f} Angstrom "
            f"({self.medium}), {len(self._names)} labels, {self._line_wl.size} lines of "
            f"{len(self.elements)} elements; an approximation for method development>"
        )

    # ------------------------------------------------------------------ labels
    def _label_values(self, labels, extrapolate=False):
        """(n, L) float64 label array in `label_names` order, and the validated table."""
        return label_values(labels, self._names, self._box, "library", extrapolate)

    # ------------------------------------------------------------------ evaluation
    def flux_tensor(self, values):
        """Differentiable flux of label tensors (the torch core of `generate`).

        Parameters
        ----------
        values : `torch.Tensor`, shape (n, L)
            Labels in `label_names` order and registry units (K, dex, km/s, dex...),
            float32 or float64; not checked against the box.

        Returns
        -------
        flux : `torch.Tensor`, shape (n, npix)
            Normalised flux, same dtype, differentiable with respect to ``values``.
        """
        import torch

        if not isinstance(values, torch.Tensor) or values.ndim != 2:
            raise ValueError("values must be a 2-D torch tensor (n, n_labels)")
        if values.shape[1] != len(self._names):
            raise ValueError(
                f"values must have {len(self._names)} columns ({self._names}), "
                f"got shape {tuple(values.shape)}"
            )
        base, tau, tau_ref = self._parts(values)
        return base * self._modulation(self._scatter(tau), self._scatter(tau_ref), torch)

    def _modulation(self, tau, tau_ref, torch):
        """``1 - (A - A_ref)`` with ``A = d_max tau / (1 + tau)`` per pixel."""
        return 1.0 + self.d_max * (1.0 / (1.0 + tau) - 1.0 / (1.0 + tau_ref))

    def _parts(self, values):
        """Base flux (n, npix) and the per-line optical depths (n, n_lines, W) on the line
        windows, at the labels and at the reference (solar mixture, ``vmicro_ref``)."""
        import torch

        dtype = values.dtype
        teff, logg, vmicro, feh = (values[:, j : j + 1] for j in range(4))
        base = self._base_flux(values[:, [0, 1, 3]], torch)
        lines = self._line_tensors(torch, dtype)
        x_fe = values[:, 4:][:, lines["elem"]]  # (n, n_lines)
        tau, width = self._central_tau(lines, teff, logg, vmicro, feh + x_fe, torch)
        tau_ref, width_ref = self._central_tau(
            lines, teff, logg, torch.full_like(vmicro, self.vmicro_ref), feh, torch
        )
        offset = torch.as_tensor(self._offset, dtype=dtype)
        pixstep = torch.as_tensor(self._pixstep, dtype=dtype)
        valid = self._valid.to(dtype)
        wl = lines["wl"]

        def optical_depth(tau, width):
            sigma = (wl * width / _C_KMS)[..., None]  # (n, n_lines, 1) Angstrom
            hi = (offset + 0.5 * pixstep) / sigma
            lo = (offset - 0.5 * pixstep) / sigma
            profile = (0.5 * math.sqrt(math.pi)) * sigma / pixstep * (torch.erf(hi) - torch.erf(lo))
            return tau[..., None] * profile * valid

        return base, optical_depth(tau, width), optical_depth(tau_ref, width_ref)

    def _scatter(self, terms, n_slots=1, slot=None):
        """Sum per-line window terms (n, n_lines, W) onto the pixels: (n, npix) or, with
        ``slot`` (n_lines,) in 0..n_slots-1, (n, npix, n_slots)."""
        import torch

        n = terms.shape[0]
        idx = self._idx
        if slot is not None:
            idx = idx * n_slots + slot[:, None]
        out = torch.zeros((n, self.npix * n_slots), dtype=terms.dtype).index_add(
            1, idx.reshape(-1), terms.reshape(n, -1)
        )
        return out if slot is None else out.reshape(n, self.npix, n_slots)

    def _base_flux(self, base_values, torch):
        """Polynomial base flux in torch: (n, npix) from (n, 3) teff, logg, fe_h."""
        dtype = base_values.dtype
        x = (base_values - torch.as_tensor(self.base.fiducials, dtype=dtype)) / torch.as_tensor(
            self.base.scales, dtype=dtype
        )
        exps = self.base.exponents
        top = int(exps.max())
        powers = [torch.ones_like(x)]
        for _ in range(top):
            powers.append(powers[-1] * x)
        powers = torch.stack(powers, dim=-1)  # (n, k, top + 1)
        terms = torch.ones((x.shape[0], exps.shape[0]), dtype=dtype)
        for k in range(exps.shape[1]):
            terms = terms * powers[:, k, torch.as_tensor(exps[:, k])]
        return terms @ torch.as_tensor(self._theta.T, dtype=dtype)

    def _rows(self, chunk_size):
        if chunk_size is None:
            per_spectrum = max(self._idx.numel(), self.npix)
            return max(1, 2**21 // per_spectrum)
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        return int(chunk_size)

    def generate(
        self,
        labels,
        *,
        extrapolate=False,
        chunk_size=None,
        dtype=np.float32,
        resolution=None,
        fwhm=None,
        wavelength=None,
    ):
        """Synthesise spectra at given labels, optionally degraded to an instrument.

        Parameters
        ----------
        labels : `~astropy.table.QTable`, dict or array-like
            A table or dict with a column per label of `label_names` (Quantities are converted
            to registry units: K, dex, km/s; plain numbers are taken in them), or an
            ``(n, L)`` array in `label_names` order. Non-label columns (e.g. ``id``) are
            carried into the library's table.
        extrapolate : bool, optional
            If False (default), labels outside `label_ranges` raise `ValueError`.
        chunk_size : int, optional
            Spectra evaluated at once (default: about 2**21 line-window elements).
        dtype : numpy float dtype, optional
            float32 (default) or float64, for the computation and the output.
        resolution : float, optional
            Broaden to this resolving power R (`SpectralLibrary.degrade`).
        fwhm : `~astropy.units.Quantity`, optional
            Or to this LSF FWHM (length).
        wavelength : `~astropy.units.Quantity`, optional
            Resample onto this grid (inside `wavelength`), flux-conservingly. The
            convolution renormalises its kernel at the window edges, so keep the grid a few
            LSF widths inside the window.

        Returns
        -------
        library : `SpectralLibrary`
            Noise-free normalised spectra on `wavelength` (unbroadened) or on the degraded
            grid and LSF, ``meta`` with the provenance and the approximation used.

        Raises
        ------
        ValueError
            On missing, extra or out-of-box labels, or a wrong array shape.
        """
        values, table = self._label_values(labels, extrapolate)
        flux = self._flux_numpy(values, chunk_size, dtype)
        library = SpectralLibrary(
            table,
            self._wave * u.AA,
            flux,
            medium=self.medium,
            meta={
                **self.meta,
                "wavelength_range": [float(self._wave[0]), float(self._wave[-1])],
            },
        )
        if resolution is None and fwhm is None and wavelength is None:
            return library
        return library.degrade(resolution=resolution, fwhm=fwhm, wavelength=wavelength)

    def _torch_dtype(self, dtype):
        import torch

        dtype = np.dtype(dtype)
        if dtype == np.float32:
            return torch.float32
        if dtype == np.float64:
            return torch.float64
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")

    def _flux_numpy(self, values, chunk_size, dtype):
        import torch

        tdt = self._torch_dtype(dtype)
        flux = np.empty((values.shape[0], self.npix), dtype=np.dtype(dtype))
        with torch.no_grad():
            for sl in _chunks(values.shape[0], self._rows(chunk_size)):
                flux[sl] = self.flux_tensor(torch.as_tensor(values[sl], dtype=tdt)).numpy()
        return flux

    def line_depths(self, labels, *, extrapolate=False):
        """Central depth of every kept line (before pixel averaging), one row per spectrum.

        Parameters
        ----------
        labels : `~astropy.table.QTable`, dict or array-like
            As in `generate`.
        extrapolate : bool, optional
            As in `generate`.

        Returns
        -------
        depth : ndarray, shape (n, n_lines)
            ``d_max tau_line / (1 + tau_line)`` (dimensionless, 0..d_max) for the rows of
            `lines`:
            the depth each line would have alone.
        """
        import torch

        values, _ = self._label_values(labels, extrapolate)
        v = torch.as_tensor(values, dtype=torch.float64)
        lines = self._line_tensors(torch, torch.float64)
        x_h = v[:, 3:4] + v[:, 4:][:, lines["elem"]]
        tau, _ = self._central_tau(lines, v[:, 0:1], v[:, 1:2], v[:, 2:3], x_h, torch)
        return (self.d_max * tau / (1 + tau)).numpy()

    def jacobian(
        self,
        labels,
        *,
        extrapolate=False,
        chunk_size=None,
        dtype=np.float64,
        resolution=None,
        fwhm=None,
        wavelength=None,
    ):
        """Exact differential spectra ``d flux / d label`` by forward-mode autograd.

        Parameters
        ----------
        labels : `~astropy.table.QTable`, dict or array-like
            As in `generate`.
        extrapolate : bool, optional
            As in `generate`.
        chunk_size : int, optional
            Spectra per evaluation (default as in `generate`).
        dtype : numpy float dtype, optional
            float64 (default) or float32.
        resolution, fwhm, wavelength : optional
            As in `generate`: the Jacobian of the degraded spectra (broadening and
            resampling are linear, so they are applied to every column of the Jacobian).

        Returns
        -------
        jacobian : ndarray, shape (n, npix, L)
            ``jacobian[i, p, k] = d flux[i, p] / d label_k`` in physical units: per K for
            ``teff``, per dex for ``logg``, ``fe_h`` and the ``[X/Fe]``, per km/s for
            ``vmicro``; labels in `label_names` order; ``npix`` is that of ``wavelength``
            when given.
        """
        import torch
        from torch.func import jvp

        values, _ = self._label_values(labels, extrapolate)
        tdt = self._torch_dtype(dtype)
        n_lab, n_el = len(self._names), len(self.elements)
        elem = torch.as_tensor(self._line_elem)
        out = np.empty((values.shape[0], self.npix, n_lab), dtype=np.dtype(dtype))
        for sl in _chunks(values.shape[0], self._rows(chunk_size)):
            x = torch.as_tensor(values[sl], dtype=tdt)
            # Every line depends on Teff, log g, vmicro, [Fe/H] and its own element's [X/Fe]
            # only, so five forward-mode passes give the whole Jacobian: one per stellar
            # label and one moving every [X/Fe] at once, whose per-line derivatives are then
            # summed into each element's own column.
            with torch.no_grad():
                base, tau, tau_ref = self._parts(x)
                tau, tau_ref = self._scatter(tau), self._scatter(tau_ref)
                modulation = self._modulation(tau, tau_ref, torch)
                # d modulation = d_max (-d tau / (1 + tau)^2 + d tau_ref / (1 + tau_ref)^2)
                g, g_ref = -self.d_max / (1.0 + tau) ** 2, self.d_max / (1.0 + tau_ref) ** 2
            for k in range(5):
                tangent = torch.zeros_like(x)
                if k < 4:
                    tangent[:, k] = 1.0
                else:
                    tangent[:, 4:] = 1.0
                with warnings.catch_warnings():
                    # torch's forward-mode AD scripts its decompositions on first use,
                    # through its own deprecated torch.jit.script: not ours to fix
                    warnings.filterwarnings(
                        "ignore",
                        message=r"`torch.jit.script` is deprecated",
                        category=DeprecationWarning,
                    )
                    _, (d_base, d_tau, d_tau_ref) = jvp(self._parts, (x,), (tangent,))
                if k < 4:
                    d_mod = g * self._scatter(d_tau) + g_ref * self._scatter(d_tau_ref)
                    out[sl, :, k] = (d_base * modulation + base * d_mod).numpy()
                else:  # the reference does not depend on [X/Fe]
                    d_tau = self._scatter(d_tau, n_slots=n_el, slot=elem)
                    out[sl, :, 4:] = ((base * g)[..., None] * d_tau).numpy()
        if resolution is None and fwhm is None and wavelength is None:
            return out
        return self._degrade_jacobian(out, resolution, fwhm, wavelength)

    def _degrade_jacobian(self, jac, resolution, fwhm, wavelength):
        """Apply `SpectralLibrary.degrade` to every (spectrum, label) column of ``jac``."""
        n, npix, n_lab = jac.shape
        rows = np.ascontiguousarray(jac.transpose(0, 2, 1)).reshape(n * n_lab, npix)
        # The columns are not spectra, but degrade is linear and only needs a label table.
        carrier = SpectralLibrary(
            {"teff": np.full(n * n_lab, 5000.0) * u.K},
            self._wave * u.AA,
            rows,
            medium=self.medium,
        )
        degraded = carrier.degrade(resolution=resolution, fwhm=fwhm, wavelength=wavelength).flux
        return np.ascontiguousarray(degraded.reshape(n, n_lab, -1).transpose(0, 2, 1))

    # ------------------------------------------------------------------ sampling
    def sample_labels(self, n, *, ranges=None, design="training", seed=0, jitter=0.5):
        """Draw label sets in the box.

        Parameters
        ----------
        n : int
            Number of label sets.
        ranges : dict, optional
            ``{name: (lo, hi)}`` in registry units narrowing the box for some labels.
        design : {"training", "uniform", "latin", "sobol"}
            ``"training"`` (default): Teff, log g, [Fe/H] near the base emulator's training
            grid (`PolynomialEmulatorLibrary.sample_labels`, avoiding the unconstrained corners
            of the polynomial, e.g. hot giants), the other labels by a Latin hypercube.
            The others: the whole box with that design (see
            `PolynomialEmulatorLibrary.sample_labels`).
        seed : int or `numpy.random.Generator`
            Random seed.
        jitter : float, optional
            Grid-step jitter of the ``"training"`` design (default 0.5).

        Returns
        -------
        labels : `~astropy.table.QTable`
            ``n`` rows, a Quantity column per label (K, dex, km/s).
        """

        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        n = int(n)
        if design not in DESIGNS:
            raise ValueError(f"unknown design {design!r}; use one of {DESIGNS}")
        box = dict(self._box)
        if ranges is not None:
            if not isinstance(ranges, dict):
                raise TypeError(f"ranges must be a dict, got {type(ranges).__name__}")
            for name, (lo, hi) in ranges.items():
                if name not in box:
                    raise ValueError(f"ranges has label {name!r} the library lacks ({self._names})")
                flo, fhi = self._box[name]
                if not (flo <= lo <= hi <= fhi):
                    raise ValueError(
                        f"range of {name} ({lo:g}, {hi:g}) must lie inside the box "
                        f"({flo:g}, {fhi:g})"
                    )
                box[name] = (float(lo), float(hi))
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        lo = np.array([box[k][0] for k in self._names])
        hi = np.array([box[k][1] for k in self._names])
        if design != "training":
            values = box_design(design, n, lo, hi, rng)
        else:  # abundances and vmicro by a Latin hypercube, Teff/logg/[Fe/H] as the base's
            values = box_design("latin", n, lo, hi, rng)
            base = self.base.sample_labels(
                n,
                ranges={name: box[name] for name in ("teff", "logg", "fe_h")},
                design="training",
                seed=rng,
                jitter=jitter,
            )
            for name in ("teff", "logg", "fe_h"):
                values[:, self._names.index(name)] = base[name].value
        return QTable(
            {name: values[:, j] * get_label(name).unit for j, name in enumerate(self._names)}
        )

    def sample(
        self,
        n,
        *,
        ranges=None,
        design="training",
        seed=0,
        jitter=0.5,
        chunk_size=None,
        resolution=None,
        fwhm=None,
        wavelength=None,
    ):
        """Draw labels (`sample_labels`) and synthesise their spectra (`generate`).

        Parameters
        ----------
        n, ranges, design, seed, jitter
            As in `sample_labels`.
        chunk_size, resolution, fwhm, wavelength
            As in `generate`.

        Returns
        -------
        library : `SpectralLibrary`
            ``meta["sampling"]`` records the design, n, seed and ranges.
        """
        labels = self.sample_labels(n, ranges=ranges, design=design, seed=seed, jitter=jitter)
        library = self.generate(
            labels, chunk_size=chunk_size, resolution=resolution, fwhm=fwhm, wavelength=wavelength
        )
        library.meta["sampling"] = {
            "design": design,
            "n": int(n),
            "seed": seed if isinstance(seed, int) else None,
            "ranges": {k: list(v) for k, v in (ranges or {}).items()},
        }
        return library
