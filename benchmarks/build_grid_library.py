"""Time and peak memory to build a degraded training library of 20 000 spectra from a grid.

    python benchmarks/build_grid_library.py [--n 20000] [--resolution 1500] [--npix 2000]

No real PHOENIX grid is available offline, so the script first writes a synthetic
grid *in the real PHOENIX HiRes layout* (``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits`` and
``PHOENIX-ACES-AGSS-COND-2011/Z-*/lte*.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits`` with the
PHX* header keywords): the spectra are the Doppler cubic emulator
(``doppler/coolstars_cubic_emulator.npz``, 0.1 A sampling, essentially unbroadened)
evaluated at the PHOENIX grid points inside its training range (Teff 3500-8000 K,
log g 0-5, [M/H] -2..+0.5), on a 4000-6800 A window (wavelengths taken as vacuum),
multiplied by a Planck function so the fluxes have PHOENIX's units and magnitude.
That grid-writing step is not part of the timed build.

The timed build is what a user runs on a real grid: ``PhoenixLibrary(directory)``
and ``to_library(labels, resolution=R, wavelength=grid)`` for ``n`` label sets drawn
uniformly in the box, degraded to R = 1500 on a ~2000-pixel log-lambda grid, written
to the ASDF store. Two modes run in separate processes (so that peak RSS is theirs):

* ``stream``: ``to_library(..., path=store)`` streams rows into the store and returns
  it memory-mapped (the survey-sized path);
* ``memory``: ``to_library(...)`` in memory, then ``write_library``.

Peak memory is reported as tracemalloc's peak of Python/numpy allocations during the
build, as the peak resident set size during the build (Linux ``VmHWM`` after resetting
it through ``/proc/self/clear_refs`` once the imports are done; it includes the ~0.35 GB
of the interpreter, numpy, astropy and torch), and as ``resource.getrusage(...).ru_maxrss``
of the whole process.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from stellarml._utils import data_dir
from stellarml.io.phoenix import PHOENIX_LOGG, PHOENIX_M_H, PHOENIX_TEFF, PHOENIX_WAVE_FILENAME
from stellarml.libraries import PolynomialEmulatorLibrary, SpectralLibrary
from stellarml.libraries.download import phoenix_relpath
from stellarml.libraries.grids import PhoenixLibrary
from stellarml.libraries.store import read_library, write_library
from stellarml.spectra import air_to_vacuum

from _common import environment, save

WINDOW = (4000.0, 6800.0)  # Angstrom, the grid files' window
TARGET = (4100.0, 6700.0)  # Angstrom, the library's grid
_H, _C, _K = 6.62607015e-27, 2.99792458e10, 1.380649e-16


def _planck(wave_aa, teff):
    lam = wave_aa * 1e-8
    return np.pi * 2 * _H * _C**2 / lam**5 / np.expm1(_H * _C / (lam * _K * teff))


def write_synthetic_phoenix_grid(root):
    """Emulator spectra at PHOENIX grid points, written in the HiRes layout; returns stats."""
    emu = PolynomialEmulatorLibrary.from_file(
        data_dir() / "doppler" / "coolstars_cubic_emulator.npz"
    )
    ranges = emu.label_ranges
    teffs = PHOENIX_TEFF[(PHOENIX_TEFF >= ranges["teff"][0]) & (PHOENIX_TEFF <= ranges["teff"][1])]
    loggs = PHOENIX_LOGG[(PHOENIX_LOGG >= ranges["logg"][0]) & (PHOENIX_LOGG <= ranges["logg"][1])]
    metals = PHOENIX_M_H[(PHOENIX_M_H >= ranges["fe_h"][0]) & (PHOENIX_M_H <= ranges["fe_h"][1])]
    points = np.array(np.meshgrid(teffs, loggs, metals, indexing="ij")).reshape(3, -1).T
    lib = emu.generate(
        {"teff": points[:, 0], "logg": points[:, 1], "fe_h": points[:, 2]},
        wavelength_range=WINDOW * u.AA,
    )
    wave = air_to_vacuum(lib.wavelength.to_value(u.AA))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(wave).writeto(root / PHOENIX_WAVE_FILENAME, overwrite=True)
    for (teff, logg, m_h), flux in zip(points, lib.flux, strict=True):
        header = fits.Header()
        header["PHXTEFF"] = (float(teff), "[K] effective temperature")
        header["PHXLOGG"] = (float(logg), "[cm/s^2] log (surface gravity)")
        header["PHXM_H"] = (float(m_h), "[M/H] metallicity (rel. sol. - Asplund &a 2009)")
        header["PHXALPHA"] = (0.0, "[a/M] alpha element enhancement")
        header["PHXXI_L"] = (1.0, "[km/s] microturbulence velocity for LTE lines")
        header["PHXEOS"] = ("ACES", "Equation of state")
        header["BUNIT"] = ("erg/s/cm^2/cm", "Unit of flux")
        data = (np.clip(flux, 0, None) * _planck(wave, teff)).astype(np.float32)
        path = root / phoenix_relpath(teff, logg, m_h)
        path.parent.mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)
    size = sum(p.stat().st_size for p in root.rglob("*.fits"))
    return {
        "n_grid_files": len(points),
        "grid_npix": int(wave.size),
        "grid_bytes": int(size),
        "axes": {
            "teff": [float(teffs[0]), float(teffs[-1]), int(teffs.size)],
            "logg": [float(loggs[0]), float(loggs[-1]), int(loggs.size)],
            "m_h": [float(metals[0]), float(metals[-1]), int(metals.size)],
        },
    }


def _labels(n, grid, seed=1):
    rng = np.random.default_rng(seed)
    axes = grid.axes
    return {
        "teff": rng.uniform(axes["teff"][0], axes["teff"][-1], n),
        "logg": rng.uniform(axes["logg"][0], axes["logg"][-1], n),
        "m_h": rng.uniform(axes["m_h"][0], axes["m_h"][-1], n),
    }


def _proc_status(key):
    """A memory figure of /proc/self/status [MiB] (Linux), or None."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) so that it covers the build only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(mode, grid_dir, store, n, resolution, npix):
    """One timed build in this process; prints a JSON line."""
    target = np.geomspace(*TARGET, npix) * u.AA  # uniform in ln(lambda)
    rss_imports = _proc_status("VmRSS")  # after the imports
    reset = _reset_peak_rss()
    tracemalloc.start()
    t0 = time.perf_counter()
    grid = PhoenixLibrary(grid_dir)
    labels = _labels(n, grid)
    if mode == "stream":
        lib = grid.to_library(labels, resolution=resolution, wavelength=target, path=store)
        t_build = time.perf_counter() - t0
        t_write = 0.0
    else:
        lib = grid.to_library(labels, resolution=resolution, wavelength=target)
        t_build = time.perf_counter() - t0
        t1 = time.perf_counter()
        write_library(lib, store, overwrite=True)
        t_write = time.perf_counter() - t1
    total = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = _proc_status("VmHWM") if reset else None
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # correctness spot check: 5 rows against interpolating at full resolution and degrading
    check = {k: v[:5] for k, v in labels.items()}
    native = grid.spectrum(check["teff"], check["logg"], check["m_h"])
    direct = SpectralLibrary.from_arrays(
        check, grid.wavelength, native.flux.value, resolution=grid.resolution
    ).degrade(resolution=resolution, wavelength=target)
    stored = read_library(store)
    rel = np.max(np.abs(stored.flux[:5] - direct.flux) / np.abs(direct.flux).max(axis=1)[:, None])
    print(
        json.dumps(
            {
                "mode": mode,
                "n_spectra": len(lib),
                "npix": lib.npix,
                "resolution": lib.resolution,
                "n_grid_points_used": lib.meta["n_grid_points"],
                "seconds_build": round(t_build, 3),
                "seconds_write": round(t_write, 3),
                "seconds_total": round(total, 3),
                "spectra_per_second": round(n / total, 1),
                "tracemalloc_peak_mib": round(peak / 2**20, 1),
                "maxrss_mib": round(maxrss_kib / 1024, 1),
                "rss_after_imports_mib": None if rss_imports is None else round(rss_imports, 1),
                "peak_rss_during_build_mib": None if peak_rss is None else round(peak_rss, 1),
                "store_bytes": Path(store).stat().st_size,
                "max_rel_diff_vs_degrading_each_spectrum": float(rel),
            }
        )
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--resolution", type=float, default=1500.0)
    p.add_argument("--npix", type=int, default=2000)
    p.add_argument("--workdir", default=None, help="where the synthetic grid goes (temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the synthetic grid and stores")
    p.add_argument("--child", choices=("stream", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--grid", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.grid, args.store, args.n, args.resolution, args.npix)
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="stellarml-grid-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        grid_info = write_synthetic_phoenix_grid(work / "HiResFITS")
        grid_info["seconds_to_write_grid"] = round(time.perf_counter() - t0, 1)
        print(
            f"synthetic PHOENIX-layout grid: {grid_info['n_grid_files']} files x "
            f"{grid_info['grid_npix']} px ({grid_info['grid_bytes'] / 2**20:.0f} MiB), written in "
            f"{grid_info['seconds_to_write_grid']} s (not timed below)"
        )
        runs = []
        for mode in ("stream", "memory"):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--grid",
                str(work / "HiResFITS"),
                "--store",
                str(work / f"library_{mode}.asdf"),
                "--n",
                str(args.n),
                "--resolution",
                str(args.resolution),
                "--npix",
                str(args.npix),
            ]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(
                f"[{mode}] {run['n_spectra']} spectra x {run['npix']} px "
                f"at R={run['resolution']:g} "
                f"from {run['n_grid_points_used']} grid points: {run['seconds_total']} s "
                f"({run['spectra_per_second']} spectra/s; build {run['seconds_build']} s, "
                f"write {run['seconds_write']} s), peak tracemalloc "
                f"{run['tracemalloc_peak_mib']} MiB, peak RSS during the build "
                f"{run['peak_rss_during_build_mib']} MiB ({run['rss_after_imports_mib']} MiB "
                f"after imports; getrusage maxrss {run['maxrss_mib']} MiB), store "
                f"{run['store_bytes'] / 2**20:.0f} MiB; max rel. diff vs degrading each "
                f"spectrum {run['max_rel_diff_vs_degrading_each_spectrum']:.1e}"
            )
        payload = {
            "benchmark": "build_grid_library",
            "command": "python benchmarks/build_grid_library.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "note": "real run on a synthetic grid written in the PHOENIX HiRes layout "
            "(Doppler emulator spectra at PHOENIX grid points); no real PHOENIX files offline",
            "grid": grid_info,
            "runs": runs,
            "environment": environment(),
        }
        path = save("build_grid_library.json", payload)
        print(f"saved {path}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
