"""Build ``stellarml/data/rv-templates.npz``: the templates `stellarml.spectra.measure_rv` uses.

Nine rest-frame synthetic spectra (M dwarf to A-type, giants and metal-poor stars)
from the Doppler cool-star emulator (the synthetic library the default model is
pre-trained on), broadened to R = 5000, on a vacuum grid uniform in ln(lambda)
(20 km/s per pixel) over 3000-18000 Angstrom, and stored as float16 (the
continuum-normalised emulator flux is ~0-1.2; float16 keeps 1e-3).

Run (about a minute)::

    python scripts/build_rv_templates.py \
        --emulator ../shared/data/doppler/coolstars_cubic_emulator.npz
"""

import argparse
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

from stellarml.libraries.emulated import PolynomialEmulatorLibrary
from stellarml.spectra import log_lambda_grid, vacuum_to_air
from stellarml.spectra.doppler import C_KMS

REPO = Path(__file__).resolve().parents[1]
#: (teff [K], logg [dex], fe_h [dex]) of the templates, inside the emulator's grid.
TEMPLATES = (
    (3700.0, 4.7, 0.0),
    (4300.0, 4.6, 0.0),
    (4500.0, 2.4, 0.0),
    (4800.0, 2.8, -1.0),
    (5200.0, 4.5, 0.0),
    (5800.0, 4.4, 0.0),
    (6000.0, 4.0, -1.5),
    (6700.0, 4.2, -0.3),
    (7800.0, 4.0, 0.0),
)
#: Resolving power of the templates.
RESOLUTION = 5000.0
#: Pixel size [km/s].
PIXEL_KMS = 20.0


def build(emulator_path, path):
    emulator = PolynomialEmulatorLibrary.from_file(emulator_path)
    grid_vac = log_lambda_grid(3010.0, 17990.0, PIXEL_KMS / C_KMS)
    degraded = emulator.degrade(resolution=RESOLUTION, wavelength=vacuum_to_air(grid_vac) * u.AA)
    labels = QTable(
        {
            "teff": [t[0] for t in TEMPLATES] * u.K,
            "logg": [t[1] for t in TEMPLATES] * u.dex,
            "fe_h": [t[2] for t in TEMPLATES] * u.dex,
        }
    )
    library = degraded.generate(labels, dtype=np.float64)
    flux = np.asarray(library.flux, dtype=np.float64)
    np.savez_compressed(
        path,
        wavelength=grid_vac,
        flux=flux.astype(np.float16),
        labels=np.array(TEMPLATES),
        resolution=np.array(RESOLUTION),
        medium=np.array("vacuum"),
        source=np.array(
            f"Doppler cool-star cubic emulator ({Path(emulator_path).name}, thedoppler 1.1.32, "
            f"MIT), sha256 {emulator.meta.get('sha256', '')}; scripts/build_rv_templates.py"
        ),
    )
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--emulator", required=True, type=Path)
    p.add_argument("--out", type=Path, default=REPO / "stellarml" / "data" / "rv-templates.npz")
    args = p.parse_args()
    print(build(args.emulator, args.out))


if __name__ == "__main__":
    main()
