"""Flux-conserving resampling with exact inverse-variance propagation.

The resampler treats each input pixel as a bin (edges half-way between
neighbouring pixel centres, the outer edges half a pixel beyond the first and
last centres, as specutils does) holding a constant flux density. An output
pixel is the average of that piecewise-constant function over the output bin,
``f_out = A @ f_in``, with ``A[j, i]`` the fraction of output bin ``j``
covered by input bin ``i``. Bad input pixels (masked, ``ivar == 0``,
non-finite flux or uncertainty) get zero weight and the weights of each output
pixel are renormalised over the good ones::

    f_out[j]   = sum_i A[j, i] w_i f_i / sum_i A[j, i] w_i
    var_out[j] = sum_i A[j, i]**2 w_i var_i / (sum_i A[j, i] w_i)**2

which is the exact variance of this linear estimator for independent input
pixels.

Gaps in the input grid are not bridged. A step between two input pixels is a
gap when it is more than `GAP_FACTOR` times the median of the seven steps
around it (one missing pixel on a regular grid is a gap). The pixels at a
gap's edges extend half that median step into it and the rest of the gap
belongs to no pixel: it carries no data.

The *coverage* of an output pixel is ``sum_i A[j, i] w_i / T_j``, with ``T_j``
the operator weight its bin would have if every part of the input range, gaps
included, were a good pixel. Without a kernel this is exactly the fraction of
the output bin covered by the bins of good input pixels. An output pixel is
left empty (flux 0, ivar 0) when its coverage is below `MIN_COVERAGE` (gap
interiors, pixels covered only by masked input) and when its bin is not fully
inside the input range.

The same machinery, with a Gaussian kernel folded into ``A``, performs the
line-spread-function degradation of `~stellarml.spectra.gaussian_broaden` and
the single-operator "broaden and resample" of `~stellarml.spectra.prepare`.
Operators are `scipy.sparse` CSR matrices built once per grid pair and kept in
a small least-recently-used cache, so a batch of spectra costs one sparse
matrix product.
"""

import hashlib
import threading
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
from astropy import units as u
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from scipy.ndimage import median_filter
from scipy.special import ndtr
from specutils import Spectrum
from specutils.manipulation import ResamplerBase

__all__ = ["InverseVarianceResampler", "resample_flux"]

#: Output pixels need at least this coverage (the fraction of their operator weight that
#: falls on good input pixels, gaps counted as no data; see the module docstring).
MIN_COVERAGE = 0.5
#: A step between input pixels more than this many times the smaller neighbouring step is a
#: Step between input pixels beyond which it is a gap (no data), in units of the median
#: of the neighbouring steps; see `_input_bins`. One missing pixel on a regular grid is a gap.
GAP_FACTOR = 1.5
_GAP_WINDOW = 7
#: Gaussian kernels are truncated at this many sigma.
KERNEL_NSIGMA = 4.0
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _edges_from_centers(centers):
    """Bin edges (npix + 1) from strictly increasing bin centres (npix >= 2)."""
    centers = np.asarray(centers, dtype=np.float64)
    edges = np.empty(centers.size + 1)
    edges[1:-1] = 0.5 * (centers[1:] + centers[:-1])
    edges[0] = centers[0] - 0.5 * (centers[1] - centers[0])
    edges[-1] = centers[-1] + 0.5 * (centers[-1] - centers[-2])
    return edges


def _input_bins(centers):
    """Bin edges of input pixels, with the gaps between them as bins of their own.

    Parameters
    ----------
    centers : ndarray (npix,)
        Strictly increasing pixel centres (npix >= 2).

    Returns
    -------
    edges : ndarray (nbins + 1,)
        Strictly increasing edges; ``nbins = npix + number of gaps``.
    real : bool ndarray (nbins,) or None
        True for the bins of pixels, False for gaps; None when there is no gap
        (``edges`` is then `_edges_from_centers`).

    Notes
    -----
    Step ``d_k = c_{k+1} - c_k`` is a gap when ``d_k > GAP_FACTOR * m_k``, with
    ``m_k`` the median of the steps ``k - 3 ... k + 3`` (`_GAP_WINDOW`). The two
    pixels at a gap's edges extend by ``m_k / 2`` into it; the rest of the step
    (more than a third of it) belongs to no pixel.
    """
    edges = _edges_from_centers(centers)
    d = np.diff(centers)
    if d.size < 2:
        return edges, None
    local = median_filter(d, size=min(_GAP_WINDOW, d.size), mode="nearest")
    gap = d > GAP_FACTOR * local
    if not gap.any():
        return edges, None
    k = np.flatnonzero(gap)
    n = centers.size
    # pixel i starts a bin at its lower edge; a gap after pixel k starts one at c_k + m_k / 2
    starts = np.empty(n + k.size)
    real = np.ones(starts.size, dtype=bool)
    pos = np.arange(n) + np.concatenate([[0], np.cumsum(gap)])
    starts[pos] = edges[:-1]
    starts[pos[k + 1]] = centers[k + 1] - 0.5 * local[k]
    starts[pos[k] + 1] = centers[k] + 0.5 * local[k]
    real[pos[k] + 1] = False
    return np.append(starts, edges[-1]), real


def _integrated_cdf(x, sigma):
    """``int_{-inf}^{x} Phi(t / sigma) dt``; ``max(x, 0)`` for ``sigma == 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = x / sigma
        val = sigma * (z * ndtr(z) + _INV_SQRT_2PI * np.exp(-0.5 * z * z))
    return np.where(sigma > 0, val, np.maximum(x, 0.0))


def _cdf(x, sigma):
    """``Phi(x / sigma)``; the step function ``x > 0`` for ``sigma == 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        val = ndtr(x / sigma)
    return np.where(sigma > 0, val, (x > 0).astype(np.float64))


class _Operator:
    """A sparse linear operator with what `_apply_operator` needs precomputed."""

    __slots__ = ("covered", "matrix", "matrix_sq", "nbytes", "rowsum", "rowsum_sq", "total")

    def __init__(self, matrix, total=None):
        self.matrix = matrix
        self.matrix_sq = matrix.multiply(matrix).tocsr()
        self.rowsum = np.asarray(matrix.sum(axis=1)).ravel()
        self.rowsum_sq = np.asarray(self.matrix_sq.sum(axis=1)).ravel()
        #: operator weight of each row if the gaps held data (the coverage denominator)
        self.total = self.rowsum if total is None else total
        #: rows with enough coverage when every input pixel is good
        self.covered = (self.rowsum > 0) & (self.rowsum >= MIN_COVERAGE * self.total)
        self.nbytes = 2 * (matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)

    @property
    def shape(self):
        return self.matrix.shape


def _build_operator(edges_in, out_lo, out_hi, sigma, real=None, *, chunk=200_000):
    """Sparse (nout, nin) operator: Gaussian(sigma) convolution of the
    piecewise-constant input, averaged over ``[out_lo, out_hi]``.

    ``out_lo == out_hi`` means evaluation at that point. ``sigma == 0`` gives
    plain bin averaging (or point sampling). Rows whose interval is not inside
    the input range are empty. Kernels are truncated at `KERNEL_NSIGMA`.
    ``real`` (from `_input_bins`) marks the bins of ``edges_in`` that are
    pixels; the others are gaps, dropped from the matrix but counted in the
    operator's ``total`` weight.
    """
    if real is not None:
        full = _build_operator(edges_in, out_lo, out_hi, sigma, chunk=chunk)
        return _Operator(full.matrix[:, np.flatnonzero(real)].tocsr(), total=full.rowsum)
    nin = edges_in.size - 1
    nout = out_lo.size
    half = KERNEL_NSIGMA * sigma
    covered = (out_lo >= edges_in[0]) & (out_hi <= edges_in[-1])
    start = np.clip(np.searchsorted(edges_in, out_lo - half, side="right") - 1, 0, nin)
    stop = np.clip(np.searchsorted(edges_in, out_hi + half, side="right"), 0, nin)
    count = np.where(covered, np.maximum(stop - start, 0), 0)
    width = int(count.max()) if nout else 0
    indptr = np.zeros(nout + 1, dtype=np.int64)
    if width == 0:
        return _Operator(sp.csr_matrix((nout, nin)))
    indices_parts, data_parts, nnz_rows = [], [], []
    rows_per_chunk = max(1, chunk // (width + 1))
    offsets = np.arange(width + 1)
    for r0 in range(0, nout, rows_per_chunk):
        r1 = min(nout, r0 + rows_per_chunk)
        # the edges bounding the candidate input pixels of each output row
        e = edges_in[np.minimum(start[r0:r1, None] + offsets, nin)]
        a = out_lo[r0:r1, None]
        b = out_hi[r0:r1, None]
        s = sigma[r0:r1, None]
        binw = (b - a)[:, 0]
        w = np.empty((r1 - r0, width))
        is_bin = binw > 0
        if is_bin.any():
            # bin average of the Gaussian-smoothed step function between two edges
            ga = _integrated_cdf(e[is_bin] - a[is_bin], s[is_bin])
            gb = _integrated_cdf(e[is_bin] - b[is_bin], s[is_bin])
            diff = ga - gb
            w[is_bin] = (diff[:, 1:] - diff[:, :-1]) / binw[is_bin, None]
        if not is_bin.all():
            ga = _cdf(e[~is_bin] - a[~is_bin], s[~is_bin])
            w[~is_bin] = ga[:, 1:] - ga[:, :-1]
        idx = start[r0:r1, None] + offsets[:-1]
        keep = (offsets[:-1] < count[r0:r1, None]) & (w > 1e-12)
        nnz_rows.append(keep.sum(axis=1))
        indices_parts.append(idx[keep])
        data_parts.append(w[keep])
    indptr[1:] = np.cumsum(np.concatenate(nnz_rows))
    matrix = sp.csr_matrix(
        (np.concatenate(data_parts), np.concatenate(indices_parts), indptr), shape=(nout, nin)
    )
    return _Operator(matrix)


class _OperatorCache:
    """Thread-safe least-recently-used cache of operators, keyed on array bytes."""

    def __init__(self, maxsize=32, maxbytes=512 * 2**20):
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self._data = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(*arrays):
        h = hashlib.blake2b(digest_size=20)
        for arr in arrays:
            arr = np.ascontiguousarray(arr, dtype=np.float64)
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def get(self, edges_in, out_lo, out_hi, sigma, *, store=True, real=None):
        """The operator for these arrays, from the cache or built (and cached if ``store``).

        ``real`` marks the bins of ``edges_in`` that are pixels (see `_input_bins`).
        """
        key = self.key(edges_in, out_lo, out_hi, sigma, *(() if real is None else (real,)))
        with self._lock:
            op = self._data.get(key)
            if op is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return op
        op = _build_operator(edges_in, out_lo, out_hi, sigma, real)
        if not store:
            return op
        with self._lock:
            self.misses += 1
            self._data[key] = op
            self._data.move_to_end(key)
            total = sum(o.nbytes for o in self._data.values())
            while len(self._data) > 1 and (len(self._data) > self.maxsize or total > self.maxbytes):
                _, old = self._data.popitem(last=False)
                total -= old.nbytes
        return op

    def clear(self):
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self):
        return len(self._data)


#: The operator cache shared by resampling, broadening and preparation.
OPERATOR_CACHE = _OperatorCache()


def _matmul_t(matrix, x):
    """``matrix @ x.T`` for a batch ``x`` of shape (n, nin): pixel-major (nout, n)."""
    return np.asarray(matrix @ np.ascontiguousarray(x.T))


def _apply_operator(op, flux, var, weight):
    """Apply an operator to a batch with good-pixel renormalisation.

    Parameters
    ----------
    op : _Operator
    flux : ndarray (n, nin)
    var : ndarray (n, nin) or None
        Variance per pixel; None means unit variance.
    weight : bool ndarray (n, nin)
        True for good pixels.

    Returns
    -------
    flux_out, ivar_out : ndarray (n, nout) float64
        Transposed views of pixel-major (nout, n) arrays.
    """
    n = flux.shape[0]
    nout = op.shape[0]
    all_good = weight.all(axis=1)
    partial = np.flatnonzero(~all_good)
    rowsum = op.rowsum[:, None]
    rowsum_sq = op.rowsum_sq[:, None]
    if partial.size:
        num = _matmul_t(op.matrix, np.where(weight, flux, 0.0))
        den = np.repeat(rowsum, n, axis=1)
        den[:, partial] = _matmul_t(op.matrix, weight[partial].astype(np.float64))
    else:
        num = _matmul_t(op.matrix, flux)
        den = rowsum
    if var is None:
        if partial.size:
            vnum = np.repeat(rowsum_sq, n, axis=1)
            vnum[:, partial] = _matmul_t(op.matrix_sq, weight[partial].astype(np.float64))
        else:
            vnum = rowsum_sq
    else:
        vnum = _matmul_t(op.matrix_sq, np.where(weight, var, 0.0) if partial.size else var)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ivar_out = den * den / vnum
        total = op.total[:, None]
        ok = (den > 0) & (den >= MIN_COVERAGE * total) & (vnum > 0) & np.isfinite(ivar_out)
        ok = np.broadcast_to(ok, (nout, n))
        flux_out = np.where(ok, num / den, 0.0)
        ivar_out = np.where(ok, ivar_out, 0.0)
    return flux_out.T, ivar_out.T


def _check_grid(wave, name, min_size=2):
    """Validate a strictly increasing, finite 1-D grid; return float64 array."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {wave.shape}")
    if wave.size < min_size:
        raise ValueError(f"{name} has {wave.size} pixel(s); at least {min_size} are needed")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{name} contains non-finite values")
    if not np.all(np.diff(wave) > 0):
        raise ValueError(f"{name} must be strictly increasing (no duplicates, sorted)")
    return wave


def _good_pixels(flux, ivar, mask):
    """Boolean good-pixel array and variance (None = unit) from flux, ivar, mask."""
    good = np.isfinite(flux)
    var = None
    if ivar is not None:
        with np.errstate(invalid="ignore"):
            good &= ivar > 0
        good &= ivar < np.inf
        var = np.zeros_like(ivar)
        np.divide(1.0, ivar, out=var, where=good)
    if mask is not None:
        good &= ~mask
    return good, var


def _as_batch(flux, ivar, mask, npix, what="flux"):
    """Coerce flux/ivar/mask to 2-D float/bool arrays with npix columns."""
    flux = np.asarray(flux, dtype=np.float64)
    single = flux.ndim == 1
    if flux.ndim not in (1, 2):
        raise ValueError(f"{what} must be 1-D (npix,) or 2-D (n, npix), got shape {flux.shape}")
    flux = np.atleast_2d(flux)
    if flux.shape[1] != npix:
        raise ValueError(
            f"{what} has {flux.shape[1]} pixels per spectrum but the wavelength grid has {npix}"
        )
    if ivar is not None:
        ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
        if ivar.shape != flux.shape:
            raise ValueError(f"ivar has shape {ivar.shape}; expected {flux.shape} like {what}")
    if mask is not None:
        mask = np.atleast_2d(np.asarray(mask))
        if mask.shape != flux.shape:
            raise ValueError(f"mask has shape {mask.shape}; expected {flux.shape} like {what}")
        mask = mask.astype(bool)
    return flux, ivar, mask, single


def resample_flux(wave_in, flux, ivar, wave_out, mask=None):
    """Flux-conserving resampling of a batch of spectra with inverse-variance propagation.

    Each output pixel is the bin average of the input, treated as piecewise
    constant over pixel bins whose edges lie half-way between pixel centres
    (see the module docstring for the formulae). Bad input pixels (``mask``
    True, ``ivar`` 0, negative or non-finite, non-finite flux) get zero weight
    and the weights are renormalised over the good ones; the inverse variance
    is propagated exactly for this linear operator (the diagonal of the output
    covariance). Gaps in the input grid (a step more than `GAP_FACTOR` times
    its neighbours) hold no data. Output pixels whose bin is not fully inside
    the input range, or whose coverage (the fraction of the bin covered by
    good input pixels) is below `MIN_COVERAGE`, get flux 0 and ivar 0: no
    output pixel is ever given weight for flux that was not observed.

    The sparse operator is built once per ``(wave_in, wave_out)`` pair and
    cached, so a batch is one sparse matrix product.

    Parameters
    ----------
    wave_in : array-like, shape (npix_in,) or (n, npix_in)
        Input pixel centres [Angstrom], strictly increasing; 1-D when shared by
        the whole batch.
    flux : array-like, shape (npix_in,) or (n, npix_in)
        Flux density (any unit; the output has the same unit).
    ivar : array-like or None, same shape as ``flux``
        Inverse variance [flux unit**-2]. None means unit variance for every
        finite pixel (the output ivar then only carries relative weights).
    wave_out : array-like, shape (npix_out,)
        Output pixel centres [Angstrom], strictly increasing.
    mask : array-like of bool, optional
        True marks bad input pixels.

    Returns
    -------
    flux_out : numpy.ndarray, shape (npix_out,) or (n, npix_out), float64
    ivar_out : numpy.ndarray, same shape, float64

    Raises
    ------
    ValueError
        For grids that are not strictly increasing, shape mismatches, or fewer
        than two pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import resample_flux
    >>> wave = np.arange(10.0)
    >>> f, iv = resample_flux(wave, np.arange(10.0), np.ones(10), np.array([2.5, 4.5, 6.5]))
    >>> print(f, iv)
    [2.5 4.5 6.5] [2. 2. 2.]
    """
    wave_out = _check_grid(wave_out, "wave_out")
    wave_in = np.asarray(wave_in, dtype=np.float64)
    if wave_in.ndim == 2:
        flux2, ivar2, mask2, single = _as_batch(flux, ivar, mask, wave_in.shape[1])
        if wave_in.shape[0] != flux2.shape[0]:
            raise ValueError(
                f"wave_in has {wave_in.shape[0]} rows but flux has {flux2.shape[0]} spectra"
            )
        grids, inverse = np.unique(wave_in, axis=0, return_inverse=True)
        inverse = np.ravel(inverse)
        out_f = np.zeros((flux2.shape[0], wave_out.size))
        out_i = np.zeros_like(out_f)
        for g, grid in enumerate(grids):
            rows = np.flatnonzero(inverse == g)
            f, iv = resample_flux(
                grid,
                flux2[rows],
                None if ivar2 is None else ivar2[rows],
                wave_out,
                None if mask2 is None else mask2[rows],
            )
            out_f[rows], out_i[rows] = f, iv
        return out_f, out_i
    wave_in = _check_grid(wave_in, "wave_in")
    flux2, ivar2, mask2, single = _as_batch(flux, ivar, mask, wave_in.size)
    edges_out = _edges_from_centers(wave_out)
    edges_in, real = _input_bins(wave_in)
    op = OPERATOR_CACHE.get(
        edges_in, edges_out[:-1], edges_out[1:], np.zeros(wave_out.size), real=real
    )
    good, var = _good_pixels(flux2, ivar2, mask2)
    flux_out, ivar_out = _apply_operator(op, flux2, var, good)
    if single:
        return flux_out[0], ivar_out[0]
    return flux_out, ivar_out


def _ivar_from_uncertainty(uncertainty, flux_unit):
    """Inverse variance [flux_unit**-2] from any astropy variance-like uncertainty.

    Non-finite and non-positive uncertainties give 0 (no information).

    Raises
    ------
    TypeError
        For uncertainty classes that cannot be turned into a variance.
    astropy.units.UnitsError
        If the uncertainty's unit does not match the flux unit.
    """
    arr = np.asarray(uncertainty.array, dtype=np.float64)
    unit = uncertainty.unit
    if isinstance(uncertainty, StdDevUncertainty):
        target, power = flux_unit, -2
    elif isinstance(uncertainty, VarianceUncertainty):
        target, power = flux_unit**2, -1
    elif isinstance(uncertainty, InverseVariance):
        target, power = flux_unit**-2, 1
    else:
        raise TypeError(
            f"uncertainty of type {type(uncertainty).__name__} cannot be converted to an "
            "inverse variance; use StdDevUncertainty, VarianceUncertainty or InverseVariance"
        )
    scale = 1.0
    if unit is not None:
        try:
            scale = u.Unit(unit).to(target)
        except u.UnitConversionError:
            raise u.UnitsError(
                f"uncertainty unit {u.Unit(unit)!s} does not match the flux unit {flux_unit!s} "
                f"(expected {target!s})"
            ) from None
    value = arr * scale if scale != 1.0 else arr
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        positive = value > 0  # negative sigmas or variances are invalid too
        if power == -2:
            value = 1.0 / (value * value)
        elif power == -1:
            value = 1.0 / value
        ok = positive & (value > 0) & (value < np.inf)
    return np.where(ok, value, 0.0)


class InverseVarianceResampler(ResamplerBase):
    """Flux-conserving resampler that honours masks and propagates inverse variance.

    A drop-in alternative to specutils'
    `~specutils.manipulation.FluxConservingResampler`: the same bin-integration
    algorithm, but

    * the spectrum's ``mask`` and bad uncertainties (zero, negative, NaN) give
      zero weight, with the weights renormalised over good pixels;
    * 1-D and N-D flux (the spectral axis last, e.g. a 2-D batch) work with or
      without an uncertainty;
    * any of `~astropy.nddata.StdDevUncertainty`,
      `~astropy.nddata.VarianceUncertainty` and `~astropy.nddata.InverseVariance`
      is accepted (units converted to the flux unit);
    * a batch is one sparse matrix product (see `resample_flux`).

    The result has an `~astropy.nddata.InverseVariance` uncertainty (exact
    diagonal propagation) and ``mask = (ivar == 0)``. Without an input
    uncertainty the result has none either, and its mask marks output pixels
    with no good input. Resampling happens in the spectral axis' own unit (the
    new axis is converted to it with the spectral equivalencies), either
    direction of the axes works.

    Parameters
    ----------
    extrapolation_treatment : {'zero_fill', 'nan_fill', 'truncate'}
        Flux written into output pixels without information: 0 or NaN (they
        are masked either way), or ``'truncate'`` to drop the output pixels
        outside the input range.

    Examples
    --------
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.nddata import StdDevUncertainty
    >>> from specutils import Spectrum
    >>> from stellarml.spectra import InverseVarianceResampler
    >>> spec = Spectrum(flux=np.arange(1.0, 11.0) * u.Jy, spectral_axis=np.arange(10.0) * u.nm,
    ...                 uncertainty=StdDevUncertainty(np.full(10, 0.5)),
    ...                 mask=np.arange(10) == 3)
    >>> out = InverseVarianceResampler()(spec, [2.5, 4.5] * u.nm)
    >>> print(out.flux, out.uncertainty.array)
    [3.  5.5] Jy [4. 8.]
    """

    def __init__(self, extrapolation_treatment="zero_fill"):
        super().__init__(extrapolation_treatment)

    def resample1d(self, orig_spectrum, fin_spec_axis):
        """Resample ``orig_spectrum`` onto ``fin_spec_axis``.

        Parameters
        ----------
        orig_spectrum : `~specutils.Spectrum`
            Spectrum to resample (1-D, or N-D with the spectral axis last).
        fin_spec_axis : `~astropy.units.Quantity` or `~specutils.SpectralAxis`
            New spectral axis (pixel centres); any spectral unit convertible to
            the spectrum's. A plain array is taken to be in the spectrum's unit.

        Returns
        -------
        `~specutils.Spectrum`
            The resampled spectrum.
        """
        axis = orig_spectrum.spectral_axis
        axis_unit = axis.unit
        if isinstance(fin_spec_axis, u.Quantity):
            try:
                new = fin_spec_axis.to_value(axis_unit, equivalencies=u.spectral())
            except u.UnitConversionError:
                raise u.UnitsError(
                    f"new spectral axis unit {fin_spec_axis.unit!s} cannot be converted to the "
                    f"spectrum's {axis_unit!s}"
                ) from None
            new_axis = np.asarray(fin_spec_axis.value, dtype=np.float64) * fin_spec_axis.unit
        else:
            new = np.asarray(fin_spec_axis, dtype=np.float64)
            new_axis = new * axis_unit
        new = np.asarray(new, dtype=np.float64)
        old = np.asarray(axis.value, dtype=np.float64)
        flux_q = orig_spectrum.flux
        flux_unit = flux_q.unit
        flux = np.asarray(flux_q.value, dtype=np.float64)
        spec_index = getattr(orig_spectrum, "spectral_axis_index", flux.ndim - 1)
        flux = np.moveaxis(flux, spec_index, -1)
        lead_shape = flux.shape[:-1]
        flux = flux.reshape(-1, flux.shape[-1])
        ivar = None
        if orig_spectrum.uncertainty is not None:
            ivar = _ivar_from_uncertainty(orig_spectrum.uncertainty, flux_unit)
            ivar = np.moveaxis(ivar, spec_index, -1).reshape(flux.shape)
        mask = None
        if orig_spectrum.mask is not None:
            mask = np.moveaxis(np.asarray(orig_spectrum.mask) != 0, spec_index, -1)
            mask = mask.reshape(flux.shape)
        if old.size >= 2 and old[0] > old[-1]:
            old = old[::-1]
            flux = flux[:, ::-1]
            ivar = None if ivar is None else ivar[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        order = np.argsort(new, kind="stable")
        flux_out, ivar_out = resample_flux(old, flux, ivar, new[order], mask)
        unsort = np.empty_like(order)
        unsort[order] = np.arange(order.size)
        flux_out, ivar_out = flux_out[:, unsort], ivar_out[:, unsort]
        bad = ivar_out == 0
        if self.extrapolation_treatment == "nan_fill":
            flux_out = np.where(bad, np.nan, flux_out)
        shape = (*lead_shape, new.size)
        flux_out = np.moveaxis(flux_out.reshape(shape), -1, spec_index)
        ivar_out = np.moveaxis(ivar_out.reshape(shape), -1, spec_index)
        bad = np.moveaxis(bad.reshape(shape), -1, spec_index)
        if self.extrapolation_treatment == "truncate":
            edges = _edges_from_centers(np.sort(old))
            edges_new = _edges_from_centers(np.sort(new))
            inside_sorted = (edges_new[:-1] >= edges[0]) & (edges_new[1:] <= edges[-1])
            inside = inside_sorted[unsort]
            flux_out = np.compress(inside, flux_out, axis=spec_index)
            ivar_out = np.compress(inside, ivar_out, axis=spec_index)
            bad = np.compress(inside, bad, axis=spec_index)
            new_axis = new_axis[inside]
        uncertainty = None
        if orig_spectrum.uncertainty is not None:
            uncertainty = InverseVariance(ivar_out, unit=flux_unit**-2)
        return Spectrum(
            flux=flux_out * flux_unit,
            spectral_axis=new_axis,
            uncertainty=uncertainty,
            mask=bad,
            meta=dict(orig_spectrum.meta),
        )
