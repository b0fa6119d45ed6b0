# %% [markdown]
# # Tutorial: emulate, fit, sample and calibrate (PhDLspec-style forward modelling)
#
# This tutorial is executed every time the documentation is built. It goes through
# the forward-modelling path of stellarml (see the "PhDLspec" and "Fitting" pages):
#
# 1. an emulator — labels in, a normalised spectrum out — and its exact
#    differential spectra ∂flux/∂label;
# 2. a fit of a real APOGEE spectrum with the gradient fitter, with a radial
#    velocity and a continuum as nuisance parameters, and its Cramér–Rao bound;
# 3. the posterior of the same spectrum from MCMC, as a corner plot;
# 4. the shipped emulator model `phdl-optical-r2000` through `derive_labels`, and
#    its calibration to the Gaia FGK Benchmark Stars.
#
# The emulator of steps 1–3 is the real 5-label APOGEE emulator of the reference
# data (`STELLARML_DATA_DIR`), in The Payne / binspec layout.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from stellarml import derive_labels, read_model
from stellarml.data import example_spectra
from stellarml.fitting import GradientFitter, MCMCFitter, cramer_rao_bound
from stellarml.models.emulator import PayneEmulator
from stellarml.visualization import plot_corner

torch.set_num_threads(2)
data = Path(os.environ.get("STELLARML_DATA_DIR", "../shared/data")) / "apogee"
emu = PayneEmulator.from_npz(data / "binspec_apogee_emulator.npz", data / "apogee_wavelength.npz")
print(emu.label_names, emu.n_pixels, "pixels")
box = zip(emu.label_lo.tolist(), emu.label_hi.tolist(), strict=True)
print("training box:", dict(zip(emu.label_names, box, strict=True)))

# %% [markdown]
# ## 1. Emulate
#
# `flux` takes physical labels (K, dex, km/s). `jacobian` gives ∂flux/∂x on the
# *scaled* labels x = (label − lo)/(hi − lo) − 0.5, exactly (for this emulator
# analytically); dividing by the box width gives the derivative per physical unit:
# the differential spectrum of each label.

# %%
labels = torch.tensor([[5200.0, 4.4, -0.3, 0.1, 6.0], [5600.0, 4.4, -0.3, 0.1, 6.0]])
with torch.no_grad():
    flux = emu.flux(labels).numpy()
    jac = emu.jacobian(emu.scale(labels[:1]))[0].numpy() / (emu.label_hi - emu.label_lo).numpy()
window = (emu.wavelength > 15700) & (emu.wavelength < 15800)
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for f, t in zip(flux, (5200, 5600), strict=True):
    ax1.plot(emu.wavelength[window], f[window], lw=0.8, label=f"Teff {t} K")
ax1.set_ylabel("normalised flux")
ax1.legend()
ax2.plot(emu.wavelength[window], 100 * jac[window, 0], lw=0.8, label="∂flux/∂Teff × 100 K")
ax2.plot(emu.wavelength[window], 0.1 * jac[window, 2], lw=0.8, label="∂flux/∂[Fe/H] × 0.1 dex")
ax2.set_xlabel("vacuum wavelength [Å]")
ax2.legend()
plt.show()

# %% [markdown]
# ## 2. Fit a real spectrum
#
# The combined APOGEE spectrum of 2M13012770+5754582, normalised, with errors.
# The file marks bad pixels with errors of about 100; they and the pixels of the
# APOGEE mask get `ivar = 0` (no information — never "data"). The fitter is a
# callable object; it returns a `FitResult` and keeps `fit_info`.

# %%
with np.load(data / "apogee_combined_2M13012770+5754582.npz") as d:
    obs, err = d["spectrum"].astype(float), d["spec_err"].astype(float)
with np.load(data / "apogee_mask.npz") as d:
    mask = d["apogee_mask"].astype(bool)
good = np.isfinite(obs) & np.isfinite(err) & (err > 0) & (err < 1.0) & ~mask
ivar = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)

fitter = GradientFitter(n_starts=4)
fit = fitter(emu, obs[None], ivar[None], rv=(-50.0, 50.0), continuum_degree=3)
for name, value, error, bound in zip(
    emu.label_names, fit.labels[0], fit.errors[0], fit.crlb[0], strict=True
):
    print(f"{name:7s} {value:9.3f} ± {error:.3f}   (Cramér–Rao bound {bound:.3f})")
print(f"rv {fit.rv[0]:.3f} ± {fit.rv_err[0]:.3f} km/s; chi2/dof = {fit.reduced_chi2[0]:.2f}")
print("converged:", bool(fit.converged[0]), "in", fitter.fit_info["n_iter"][0], "iterations")

# %% [markdown]
# χ²/ν is about 4: the emulator's own error (and any underestimate of the
# pipeline errors) is not in this noise model, so the bound — which assumes a
# perfect emulator — is far below the real uncertainty. `model_error=` adds an
# emulator error in quadrature; the shipped optical model below carries one per
# pixel, measured on stars it was not trained on.
#
# The bound scales with the noise, as it must:

# %%
for snr in (30, 100):
    sigma = cramer_rao_bound(emu, fit.labels, np.full((1, emu.n_pixels), snr**2.0))
    print(f"S/N {snr}: CRLB Teff {sigma[0, 0]:.1f} K, [Fe/H] {sigma[0, 2]:.4f} dex")

# %% [markdown]
# ## 3. Sample the posterior
#
# `MCMCFitter` starts emcee's walkers around the gradient optimum and evaluates
# all walkers in one emulator call per step. A chain shorter than 50
# autocorrelation times is flagged `FIT_NOT_CONVERGED`; this one is kept short so
# that the documentation builds quickly, and the flag tells us so.

# %%
mcmc = MCMCFitter(n_walkers=16, n_steps=800, n_burn=200, seed=1)
draws = mcmc(emu, obs[None], ivar[None])
print(
    "acceptance",
    mcmc.fit_info["acceptance_fraction"][0].round(2),
    "chain / tau",
    mcmc.fit_info["chain_over_tau"][0].round(1),
    "converged",
    bool(draws.converged[0]),
)
posterior = draws.to_posterior()
for name in emu.label_names[:3]:
    lo, mid, hi = posterior.quantiles(name, [0.16, 0.5, 0.84])[0]
    print(f"{name:7s} {mid:9.3f}  [{lo:.3f}, {hi:.3f}]")
plot_corner(posterior, labels=["teff", "logg", "fe_h"])
plt.show()

# %% [markdown]
# ## 4. The shipped emulator model, calibrated
#
# `read_model("phdl-optical-r2000")` is an emulator of optical spectra at R ≈ 1500
# (3800–7000 Å), trained on the MILES training stars with the gradient prior of a
# synthetic library, and fitted to each spectrum by `derive_labels`. Its
# calibration was fitted on *out-of-fold* fits of the 55 Gaia FGK Benchmark Stars
# among the MILES training stars: each benchmark star fitted by an emulator trained
# without it. Here it labels the synthetic example spectra of `stellarml demo`
# (known labels; they are synthetic, so this is a consistency check, not a
# validation).

# %%
model = read_model("phdl-optical-r2000")
spectra, truth = example_spectra()
raw = derive_labels(spectra, model=model, calibrate=False)
calibrated = derive_labels(spectra, model=model)
print(calibrated.meta["calibration"])
for name in ("teff", "logg", "fe_h"):
    step = model.calibration.describe()["corrections"][name]
    print(
        f"{name}: offset {step['coefficients'][0]:+.3f}, widths x{step['width_scale']:.2f}, "
        f"68 % coverage of the benchmarks {step['coverage_before']:.2f} -> "
        f"{step['coverage_after']:.2f}"
    )
table = calibrated["teff", "teff_err_lo", "teff_err_hi", "teff_crlb", "logg", "fe_h", "chi2", "dof"]
table["teff_true"] = truth["teff"]
print(table)
