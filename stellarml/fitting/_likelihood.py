"""What every fitter shares: the data model, nuisance parameters, priors and checks.

The model of an observed spectrum ``f`` with inverse variance ``w`` on the
emulator's grid ``lambda_p`` is::

    f_p ~ C(lambda_p) * m(lambda_p / (1 + v / c); labels)

* ``m`` is the emulator's spectrum, moved to radial velocity ``v`` (km/s,
  positive = redshift; only when an RV is fitted) by linear interpolation in
  ``ln lambda`` on the emulator's own grid. Pixels whose shifted position
  falls beyond the grid take the edge value; a shifted position inside a gap
  of the grid (an interval wider than 1.5 times the median step, e.g.
  APOGEE's chip gaps) takes the value of the nearer pixel.
* ``C`` is a multiplicative continuum, a Legendre series of degree ``d`` in
  the wavelength scaled to [-1, 1] (only when ``continuum_degree`` is set).
  It is **profiled out**: at every evaluation its coefficients are the
  weighted linear least-squares solution given ``m``, so the fitters only
  search the labels (and RV). Covariances and Cramér–Rao bounds include the
  continuum coefficients as parameters, so that the label errors are
  marginalised over them.

The objective the fitters minimise is ``chi2 + sum_j ((l_j - mu_j) / s_j)**2``:
chi-square over the pixels with ``w > 0`` plus the Gaussian priors. Labels
live in a box (the emulator's training box, narrowed by any ``bounds``); the
fitters work on the scaled labels ``x = (l - lo) / (hi - lo) - 0.5`` of
`stellarml.models.emulator.SpectrumEmulator`. Float32 arithmetic for the
spectra, float64 for the chi-square sums and the matrices.
"""

import numpy as np
import torch

from ..flags import LabelFlag

__all__ = ["C_KMS", "FitProblem", "legendre_basis"]

#: Speed of light [km/s].
C_KMS = 299792.458

#: Objective assigned to parameter vectors outside the box (CMA-ES).
_OUTSIDE = 1e30


def legendre_basis(wavelength, degree):
    """Legendre polynomials ``P_0..P_degree`` of the wavelength scaled to [-1, 1].

    Parameters
    ----------
    wavelength : array-like
        ``(npix,)`` [Angstrom].
    degree : int
        Highest degree (>= 0).

    Returns
    -------
    basis : `numpy.ndarray`
        ``(npix, degree + 1)`` float64.

    Examples
    --------
    >>> from stellarml.fitting._likelihood import legendre_basis
    >>> legendre_basis([1.0, 2.0, 3.0], 1)
    array([[ 1., -1.],
           [ 1.,  0.],
           [ 1.,  1.]])
    """
    w = np.asarray(wavelength, dtype=np.float64)
    t = 2.0 * (w - w[0]) / (w[-1] - w[0]) - 1.0
    return np.polynomial.legendre.legvander(t, int(degree))


def _check_degree(degree):
    if degree is None:
        return None
    if isinstance(degree, bool) or int(degree) != degree or degree < 0:
        raise ValueError(f"continuum_degree must be None or an integer >= 0, got {degree!r}")
    return int(degree)


def _check_rv(rv):
    if rv is None or rv is False:
        return None
    if rv is True:
        return (-500.0, 500.0)
    try:
        lo, hi = (float(v) for v in rv)
    except (TypeError, ValueError):
        raise ValueError(
            f"rv must be None (no RV fitted), True or (vmin, vmax) in km/s, got {rv!r}"
        ) from None
    if not (np.isfinite([lo, hi]).all() and lo < hi and -C_KMS < lo):
        raise ValueError(f"rv bounds must be finite with vmin < vmax (km/s), got {rv!r}")
    return (lo, hi)


def _check_model_error(value, shape):
    """``model_error`` broadcast to ``shape`` (n, npix); finite and >= 0."""
    try:
        s = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
    except ValueError:
        raise ValueError(
            f"model_error must be a scalar, (npix,) or (n, npix) for flux {shape}, "
            f"got shape {np.shape(value)}"
        ) from None
    if not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("model_error must be finite and non-negative (normalised flux)")
    return s


def _per_row(value, n, what):
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{what} must be a scalar or have one value per spectrum ({n})")
    return a


class FitProblem:
    """One batch of spectra to fit with an emulator: data, nuisance model, priors, box.

    The fitters build one and use its evaluations; it is not meant to be
    built by hand (its signature mirrors the fitters' call).

    Parameters
    ----------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
        Anything with its interface (duck-typed).
    flux, ivar : array-like
        ``(n, npix)`` or ``(npix,)`` on the emulator's grid; ``ivar = 0``
        marks pixels without information.
    rv : None, True or (vmin, vmax)
        Fit a radial velocity [km/s] within these bounds (True: +-500 km/s).
    continuum_degree : int or None
        Degree of the multiplicative Legendre continuum (profiled out).
    priors : dict, optional
        ``{label: (mean, sigma)}`` Gaussian priors in physical units (scalars
        or ``(n,)`` arrays per spectrum); ``{"rv": (mean, sigma)}`` too.
    bounds : dict, optional
        ``{label: (lo, hi)}`` box in physical units, intersected with the
        emulator's training box (the default box).
    model_error : float or array-like, optional
        The emulator's own error, a standard deviation in normalised flux
        (scalar, ``(npix,)`` or ``(n, npix)``), added in quadrature to the
        noise: ``ivar -> ivar / (1 + ivar * model_error**2)``.

    Attributes
    ----------
    valid : `numpy.ndarray`
        ``(n,)`` rows that can be fitted.
    row_flags : `numpy.ndarray`
        ``(n,)`` `~stellarml.flags.LabelFlag` bits of the rows that cannot
        (``BAD_INPUT``: non-finite flux where ``ivar > 0``;
        ``TOO_FEW_GOOD_PIXELS``: fewer good pixels than parameters + 1).

    Raises
    ------
    ValueError
        If shapes do not match the emulator's grid, ``ivar`` is negative or
        not finite, or a prior, bound or option is malformed (the message
        names it).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(2)  # a small random emulator of Teff [K] and log g [dex]
    >>> emu = PayneEmulator(rng.normal(size=(200, 4, 2)), rng.normal(size=(200, 4)),
    ...                     0.1 * rng.normal(size=(200, 4)), np.ones(200), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5100.0, 200))
    >>> from stellarml.fitting import FitProblem
    >>> flux = emu.flux(torch.tensor([[5200.0, 2.5], [4800.0, 3.5]])).numpy()
    >>> flux[1, 3] = np.nan  # a bad pixel that claims to have data
    >>> problem = FitProblem(emu, flux, np.full_like(flux, 1e4), rv=(-100.0, 100.0),
    ...                      continuum_degree=2, priors={"logg": (3.0, 0.5)})
    >>> problem.n_params, problem.n_continuum  # teff, logg, rv; 3 Legendre coefficients
    (3, 3)
    >>> problem.valid, problem.row_flags, problem.dof
    (array([ True, False]), array([0, 4]), array([194,   0]))
    >>> problem.to_physical([0.0, 0.0, 0.0])  # the centre of the box
    array([5000.,    3.])
    >>> try:
    ...     FitProblem(emu, flux[:, :100], np.ones((2, 100)))
    ... except ValueError as err:
    ...     print(err)
    flux must be (n, 200) on the emulator's wavelength grid, got (2, 100)
    """

    def __init__(
        self,
        emulator,
        flux,
        ivar,
        *,
        rv=None,
        continuum_degree=None,
        priors=None,
        bounds=None,
        model_error=None,
    ):
        self.emulator = emulator
        names = tuple(emulator.label_names)
        self.label_names = names
        n_labels = len(names)
        npix = int(np.asarray(emulator.wavelength).size)
        flux = np.asarray(flux, dtype=np.float64)
        ivar = np.asarray(ivar, dtype=np.float64)
        if flux.ndim == 1:
            flux = flux[None]
        if ivar.ndim == 1:
            ivar = ivar[None]
        if flux.ndim != 2 or flux.shape[1] != npix:
            raise ValueError(
                f"flux must be (n, {npix}) on the emulator's wavelength grid, got {flux.shape}"
            )
        if ivar.shape != flux.shape:
            raise ValueError(f"ivar must be shaped like flux {flux.shape}, got {ivar.shape}")
        if not np.isfinite(ivar).all() or (ivar < 0).any():
            raise ValueError(
                "ivar must be finite and non-negative (ivar = 0 marks a pixel without data)"
            )
        n = flux.shape[0]
        if model_error is not None:
            ivar = ivar / (1.0 + ivar * _check_model_error(model_error, flux.shape) ** 2)
        self.n = n
        self.n_labels = n_labels
        self.npix = npix
        self.rv_bounds = _check_rv(rv)
        self.degree = _check_degree(continuum_degree)
        self.n_params = n_labels + (self.rv_bounds is not None)
        self.n_continuum = 0 if self.degree is None else self.degree + 1
        good = ivar > 0
        bad_flux = (good & ~np.isfinite(flux)).any(axis=1)
        n_good = good.sum(axis=1)
        self.n_good = np.where(bad_flux, 0, n_good)
        too_few = n_good < self.n_params + self.n_continuum + 1
        self.row_flags = np.where(bad_flux, int(LabelFlag.BAD_INPUT), 0) | np.where(
            too_few & ~bad_flux, int(LabelFlag.TOO_FEW_GOOD_PIXELS), 0
        )
        self.valid = self.row_flags == 0
        self.dof = np.where(self.valid, n_good - self.n_params - self.n_continuum, 0)

        # ---------------------------------------------------------------- tensors
        lo = emulator.label_lo
        self.device = lo.device
        self.dtype = torch.float32
        lo_np = lo.detach().cpu().numpy().astype(np.float64)
        hi_np = emulator.label_hi.detach().cpu().numpy().astype(np.float64)
        self.label_lo, self.label_hi = lo_np, hi_np
        self.label_scale = hi_np - lo_np
        f = np.where(good & np.isfinite(flux), flux, 0.0)
        w = np.where(self.valid[:, None], ivar, 0.0)
        self.flux = torch.as_tensor(f, dtype=self.dtype, device=self.device)
        self.ivar = torch.as_tensor(w, dtype=self.dtype, device=self.device)
        self.sqrt_ivar = self.ivar.sqrt()

        wave = np.asarray(emulator.wavelength, dtype=np.float64)
        self.wavelength = wave
        if self.degree is not None:
            basis = legendre_basis(wave, self.degree)
            self.basis = torch.as_tensor(basis, dtype=self.dtype, device=self.device)
            outer = basis[:, :, None] * basis[:, None, :]
            self.basis_outer = torch.as_tensor(
                outer.reshape(npix, -1), dtype=self.dtype, device=self.device
            )
        if self.rv_bounds is not None:
            u = np.log(wave)
            du = np.diff(u)
            self._u = torch.as_tensor(u, dtype=torch.float64, device=self.device)
            self._u0 = torch.as_tensor(u[:-1], dtype=torch.float64, device=self.device)
            self._du = torch.as_tensor(du, dtype=torch.float64, device=self.device)
            self._gap = torch.as_tensor(du > 1.5 * np.median(du), device=self.device)

        # ---------------------------------------------------------------- box, priors
        box_lo = np.full(self.n_params, -0.5)
        box_hi = np.full(self.n_params, 0.5)
        for label, value in dict(bounds or {}).items():
            j = self._param_index(label, "bounds")
            try:
                b_lo, b_hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"bounds[{label!r}] must be (lo, hi), got {value!r}") from None
            if j == n_labels:
                raise ValueError("give the RV bounds as rv=(vmin, vmax), not in bounds")
            s_lo = (b_lo - lo_np[j]) / self.label_scale[j] - 0.5
            s_hi = (b_hi - lo_np[j]) / self.label_scale[j] - 0.5
            box_lo[j] = max(box_lo[j], s_lo)
            box_hi[j] = min(box_hi[j], s_hi)
            if not box_lo[j] < box_hi[j]:
                raise ValueError(
                    f"bounds[{label!r}] = {value!r} does not overlap the emulator's box "
                    f"[{lo_np[j]:g}, {hi_np[j]:g}]"
                )
        self.box_lo, self.box_hi = box_lo, box_hi  # scaled labels (+ rv in km/s)
        if self.rv_bounds is not None:
            self.box_lo[-1], self.box_hi[-1] = self.rv_bounds
        self.prior_mean = np.zeros((n, self.n_params))
        self.prior_inv_sigma = np.zeros((n, self.n_params))  # 0 = no prior
        for label, value in dict(priors or {}).items():
            j = self._param_index(label, "priors")
            try:
                mean, sigma = value
            except (TypeError, ValueError):
                raise ValueError(
                    f"priors[{label!r}] must be (mean, sigma) in physical units, got {value!r}"
                ) from None
            mean = _per_row(mean, n, f"priors[{label!r}] mean")
            sigma = _per_row(sigma, n, f"priors[{label!r}] sigma")
            if not (np.isfinite(mean).all() and np.isfinite(sigma).all() and (sigma > 0).all()):
                raise ValueError(f"priors[{label!r}] needs finite means and sigmas > 0")
            if j < n_labels:
                self.prior_mean[:, j] = (mean - lo_np[j]) / self.label_scale[j] - 0.5
                self.prior_inv_sigma[:, j] = self.label_scale[j] / sigma
            else:
                self.prior_mean[:, j] = mean
                self.prior_inv_sigma[:, j] = 1.0 / sigma
        self.has_prior = bool((self.prior_inv_sigma > 0).any())

    def _param_index(self, label, what):
        if label == "rv":
            if self.rv_bounds is None:
                raise ValueError(f"{what} has 'rv' but no RV is fitted (pass rv=...)")
            return self.n_labels
        if label not in self.label_names:
            raise ValueError(
                f"{what} names {label!r}, which the emulator does not have "
                f"(its labels: {', '.join(self.label_names)})"
            )
        return self.label_names.index(label)

    # ------------------------------------------------------------------ conversions
    def to_physical(self, theta):
        """Parameters ``(..., P)`` (scaled labels, rv km/s) -> physical labels ``(..., L)``."""
        theta = np.asarray(theta, dtype=np.float64)
        return (theta[..., : self.n_labels] + 0.5) * self.label_scale + self.label_lo

    def to_scaled(self, labels):
        """Physical labels ``(..., L)`` -> scaled labels."""
        labels = np.asarray(labels, dtype=np.float64)
        return (labels - self.label_lo) / self.label_scale - 0.5

    def jacobian_scale(self):
        """``d physical / d parameter`` ``(P,)``: the label ranges, 1 for rv."""
        return np.concatenate([self.label_scale, np.ones(self.n_params - self.n_labels)])

    def start_points(self, init, n_starts, seed):
        """``(n, S, P)`` starting points: ``init`` (or the box centre) then Sobol points."""
        from scipy.stats import qmc

        n, p = self.n, self.n_params
        first = np.tile(0.5 * (self.box_lo + self.box_hi), (n, 1))
        if self.rv_bounds is not None:
            first[:, -1] = np.clip(0.0, *self.rv_bounds)
        if init is not None:
            init = np.asarray(init, dtype=np.float64)
            if init.ndim == 1:
                init = np.tile(init, (n, 1))
            if init.shape not in ((n, self.n_labels), (n, p)):
                raise ValueError(
                    f"init must be ({self.n_labels},) or (n, {self.n_labels}) physical labels"
                    + (" (optionally with rv as a last column)" if p > self.n_labels else "")
                    + f", got {init.shape}"
                )
            if not np.isfinite(init).all():
                raise ValueError("init holds non-finite values")
            first[:, : self.n_labels] = self.to_scaled(init[:, : self.n_labels])
            if init.shape[1] == p and p > self.n_labels:
                first[:, -1] = init[:, -1]
        starts = [first]
        if n_starts > 1:
            m = int(np.ceil(np.log2(n_starts - 1)))
            sobol = qmc.Sobol(p, scramble=True, seed=seed).random_base2(m)[: n_starts - 1]
            pts = self.box_lo + sobol * (self.box_hi - self.box_lo)
            starts.extend(np.tile(pt, (n, 1)) for pt in pts)
        out = np.stack(starts, axis=1)
        return np.clip(out, self.box_lo, self.box_hi)

    # ------------------------------------------------------------------ model
    def _shift(self, m, v):
        """Move ``m`` ``(B, npix[, K])`` to RV ``v`` ``(B,)``; also d out / d v."""
        s = torch.log1p(v.to(torch.float64) / C_KMS)  # ln(1 + v/c)
        q = self._u[None, :] - s[:, None]
        i = torch.searchsorted(self._u, q.contiguous()) - 1
        i = i.clamp(0, self.npix - 2)
        du = self._du[i]
        t_raw = (q - self._u0[i]) / du
        inside = (t_raw >= 0) & (t_raw <= 1)  # not beyond the grid's ends
        t = t_raw.clamp(0.0, 1.0)
        gap = self._gap[i]
        t = torch.where(gap, torch.round(t), t)
        slope_ok = inside & ~gap
        t = t.to(m.dtype)
        if m.ndim == 3:
            idx = i[:, :, None].expand(-1, -1, m.shape[2])
            m0, m1 = m.gather(1, idx), m.gather(1, idx + 1)
            return m0 + t[:, :, None] * (m1 - m0), None
        m0, m1 = m.gather(1, i), m.gather(1, i + 1)
        out = m0 + t * (m1 - m0)
        # d out / d v = (m1 - m0) / du * dt/ds * ds/dv, with dt/ds = -1/du... per unit du
        dsdv = (1.0 / (C_KMS + v.to(torch.float64)))[:, None]
        d_out = torch.where(slope_ok, -(m1 - m0).to(torch.float64) / du * dsdv, 0.0)
        return out, d_out.to(m.dtype)

    def _continuum(self, m, rows):
        """Profiled continuum: coefficients ``(B, K)``, ``C`` ``(B, npix)``, Gram ``(B, K, K)``."""
        w, f = self.ivar[rows], self.flux[rows]
        k = self.n_continuum
        gram = ((w * m * m) @ self.basis_outer).view(-1, k, k).double()
        rhs = ((w * m * f) @ self.basis).double()
        ridge = 1e-10 * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
        gram = gram + ridge[:, None, None] * torch.eye(k, dtype=gram.dtype, device=gram.device)
        coef = torch.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
        cont = coef.to(self.dtype) @ self.basis.T
        return coef, cont, gram

    def model(self, theta, rows, *, jacobian=False):
        """Model spectra of parameters ``theta`` ``(B, P)`` for data rows ``rows`` ``(B,)``.

        Returns a dict: ``m`` (emulator spectrum, shifted), ``model`` (times the
        continuum), ``cont``, ``coef``, ``gram``; with ``jacobian=True`` also
        ``dm`` ``(B, npix, P)`` (d shifted emulator spectrum / d parameters).
        """
        theta = torch.as_tensor(theta, device=self.device)
        x = theta[:, : self.n_labels].to(self.dtype)
        emu = self.emulator
        if jacobian:
            if hasattr(emu, "flux_and_jacobian"):
                m, jm = emu.flux_and_jacobian(x)
            else:
                m = emu(x)
                jm = emu.jacobian(x)
        else:
            m = emu(x)
            jm = None
        m = m.detach().to(self.dtype)
        dv = None
        if self.rv_bounds is not None:
            v = theta[:, -1]
            m, dv = self._shift(m, v)
            if jm is not None:
                jm = self._shift(jm.detach().to(self.dtype), v)[0]
        out = {"m": m}
        if self.degree is not None:
            coef, cont, gram = self._continuum(m, rows)
            out.update(model=cont * m, cont=cont, coef=coef, gram=gram)
        else:
            out.update(model=m, cont=None, coef=None, gram=None)
        if jacobian:
            if dv is not None:
                jm = torch.cat([jm, dv[:, :, None]], dim=2)
            out["dm"] = jm
        return out

    def prior_terms(self, theta, rows):
        """Prior residuals ``(B, P)`` (0 where no prior) and their 1/sigma ``(B, P)``."""
        inv = torch.as_tensor(self.prior_inv_sigma[rows], dtype=torch.float64, device=self.device)
        mu = torch.as_tensor(self.prior_mean[rows], dtype=torch.float64, device=self.device)
        return (theta.double() - mu) * inv, inv

    def objective(self, theta, rows):
        """``chi2`` ``(B,)`` and ``chi2 + prior`` ``(B,)`` (float64) and the evaluation."""
        ev = self.model(theta, rows)
        r = self.sqrt_ivar[rows] * (self.flux[rows] - ev["model"])
        chi2 = r.double().square().sum(1)
        total = chi2
        if self.has_prior:
            rp, _ = self.prior_terms(torch.as_tensor(theta, device=self.device), rows)
            total = chi2 + rp.square().sum(1)
        return chi2, total, ev

    def normal_equations(self, theta, rows):
        """Gauss-Newton ``H = J^T J`` ``(B, P, P)`` and ``g = J^T r`` ``(B, P)``, plus chi2.

        ``r = sqrt(w) (f - C m)`` and ``J = d r / d theta`` at fixed continuum
        (its exact gradient, by the envelope theorem), priors included.
        """
        ev = self.model(theta, rows, jacobian=True)
        sw = self.sqrt_ivar[rows]
        r = sw * (self.flux[rows] - ev["model"])
        scale = sw if ev["cont"] is None else sw * ev["cont"]
        jac = -(scale[:, :, None] * ev["dm"])
        h = torch.einsum("bpi,bpj->bij", jac, jac).double()
        g = torch.einsum("bpi,bp->bi", jac, r).double()
        chi2 = r.double().square().sum(1)
        total = chi2
        if self.has_prior:
            rp, inv = self.prior_terms(torch.as_tensor(theta, device=self.device), rows)
            h = h + torch.diag_embed(inv.square())
            g = g + rp * inv
            total = chi2 + rp.square().sum(1)
        return h, g, chi2, total

    def fisher(self, theta, rows, *, prior=True):
        """Fisher matrix ``(B, P + K, P + K)`` (float64) of labels, rv and continuum.

        The continuum coefficients (the last ``K`` parameters) are the
        profiled ones at ``theta``. With ``prior=True`` the Gaussian priors'
        information is added.
        """
        ev = self.model(theta, rows, jacobian=True)
        sw = self.sqrt_ivar[rows]
        cols = [(sw if ev["cont"] is None else sw * ev["cont"])[:, :, None] * ev["dm"]]
        if self.degree is not None:
            cols.append((sw * ev["m"])[:, :, None] * self.basis[None])
        jac = torch.cat(cols, dim=2).double()
        fish = torch.einsum("bpi,bpj->bij", jac, jac)
        if prior and self.has_prior:
            inv = torch.as_tensor(
                self.prior_inv_sigma[rows], dtype=torch.float64, device=self.device
            )
            pad = torch.zeros(
                (len(rows), self.n_continuum), dtype=torch.float64, device=self.device
            )
            fish = fish + torch.diag_embed(torch.cat([inv, pad], dim=1).square())
        return fish

    def outside(self, theta):
        """Which rows of ``theta`` ``(B, P)`` (numpy) lie outside the box."""
        return ((theta < self.box_lo) | (theta > self.box_hi)).any(axis=-1)
