"""How the legacy model files here were made (run with stellarml at commit 1fd7a79).

    PYTHONPATH=<checkout of 1fd7a79> python tests/data/legacy/make_legacy_files.py

It writes ``toy_remap_model.asdf`` (tag remap_model-1.0.0, manifest
stellarml-1.1.0), ``toy_remap_ensemble.asdf`` (remap_ensemble-1.0.0, two
members) and ``expected.npz``: that stellarml's predictions on fixed inputs.
``tests/io/test_legacy_files.py`` reads the files with today's stellarml and
checks that the predictions are unchanged. The script uses the API of that
commit (``model.write``); it is kept as the record of how the files were made.
"""

from pathlib import Path

import numpy as np

from stellarml.models import RemapEnsemble, RemapModel
from stellarml.spectra import PreparationSettings, log_lambda_grid

HERE = Path(__file__).resolve().parent
N_PIX = 96


def toy_data(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.column_stack(
        [rng.uniform(4000, 7000, n), rng.uniform(1, 5, n), rng.uniform(-2, 0.5, n)]
    )
    x = np.arange(N_PIX)
    depth = 0.3 * (7000.0 - labels[:, :1]) / 3000.0
    flux = 1.0 - depth * np.exp(-0.5 * ((x - N_PIX / 2) / 3.0) ** 2)
    flux = (flux + 0.01 * rng.standard_normal(flux.shape)).astype(np.float32)
    return flux, np.full(flux.shape, 1e4, dtype=np.float32), labels


def toy_model(seed):
    wave = log_lambda_grid(5000.0, 5100.0, np.log(5100.0 / 5000.0) / (N_PIX - 1))
    flux, ivar, labels = toy_data(48, seed)
    model = RemapModel(
        preparation=PreparationSettings(wavelength=wave, resolution=2000.0),
        architecture={
            "stem_channels": 4,
            "stage_channels": (4, 8),
            "stage_blocks": (1, 1),
            "pool_length": 4,
            "embedding_dim": 8,
        },
        training={
            "max_epochs": 2,
            "batch_size": 16,
            "progress": False,
            "domain_reference_size": 16,
        },
        name="toy-remap",
        seed=seed,
        device="cpu",
    )
    return model.fit_prepared(flux, ivar, labels)


def main():
    single = toy_model(1)
    ensemble = RemapEnsemble([single, toy_model(2)], name="toy-ensemble")
    single.write(HERE / "toy_remap_model.asdf")
    ensemble.write(HERE / "toy_remap_ensemble.asdf")
    flux, ivar, _ = toy_data(12, 99)
    out = {"flux": flux, "ivar": ivar}
    for key, model in (("model", single), ("ensemble", ensemble)):
        result = model.predict_prepared(flux, ivar, device="cpu", return_pdf=True)
        for name in model.label_names:
            for stat, values in result["summary"][name].items():
                out[f"{key}/{name}/{stat}"] = values
            out[f"{key}/{name}/pdf"] = result["pdf"][name]
        out[f"{key}/domain_distance"] = result["domain_distance"]
    np.savez(HERE / "expected.npz", **out)


if __name__ == "__main__":
    main()
