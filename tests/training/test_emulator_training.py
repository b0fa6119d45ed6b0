"""train_emulator and reference_jacobians: the gradient prior, on the polynomial library."""

import astropy.units as u
import numpy as np
import pytest
import torch

from stellarml.libraries import PolynomialEmulatorLibrary
from stellarml.models.emulator import MLPEmulator, PayneEmulator, TransformerEmulator
from stellarml.spectra import log_lambda_grid
from stellarml.training import (
    jacobian_error,
    jacobians_from_perturbed,
    load_reference_jacobians,
    reference_jacobians,
    train_emulator,
)

LO = np.array([4500.0, 3.5, -1.0])
HI = np.array([6000.0, 5.0, 0.3])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are small: one thread is faster, and steadier on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def problem(data_dir):
    """193 px at R = 2000 around Mg b, uniform labels in a dwarf box; float64 flux."""
    lib = PolynomialEmulatorLibrary.from_file(data_dir / "doppler" / "coolstars_cubic_emulator.npz")
    grid = log_lambda_grid(5150.0, 5250.0, 1e-4)
    deg = lib.degrade(resolution=2000, wavelength=grid * u.AA)
    ranges = dict(zip(deg.label_names, zip(LO, HI, strict=True), strict=True))

    def draw(n, seed):
        table = deg.sample_labels(n, ranges=ranges, seed=seed)
        labels = np.column_stack([table[k].value for k in deg.label_names])
        return labels, deg.generate(labels, dtype=np.float64).flux

    return {"library": deg, "grid": grid, "names": deg.label_names, "draw": draw}


def test_reference_jacobians_fd_matches_the_exact_polynomial_derivative(problem):
    deg = problem["library"]
    labels, _ = problem["draw"](5, 7)
    box = (LO, HI)
    exact = reference_jacobians(deg, labels, box)  # auto: the polynomial's derivative
    fd = reference_jacobians(deg, labels, box, method="fd")
    assert exact.shape == fd.shape == (5, problem["grid"].size, 3)
    np.testing.assert_allclose(fd, exact, rtol=0, atol=1e-6 * np.abs(exact).max())
    # a plain callable is differenced too
    call = reference_jacobians(
        lambda a: deg.generate(a, extrapolate=True, dtype=np.float64).flux, labels, box
    )
    np.testing.assert_allclose(call, fd, rtol=0, atol=1e-12)
    # per scaled unit: a 100 K Teff step changes the flux by J_teff * 100 / 1500
    step = labels.copy()
    step[:, 0] += 1.0
    df = deg.generate(step, dtype=np.float64).flux - deg.generate(labels, dtype=np.float64).flux
    np.testing.assert_allclose(df, exact[..., 0] / (HI[0] - LO[0]), rtol=0, atol=1e-5)
    assert np.abs(exact).max() > 0.05


def test_reference_jacobians_by_autograd_of_a_torch_generator():
    a = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)  # (npix, L)

    class Toy(torch.nn.Module):
        def forward(self, labels):
            return torch.sin(labels @ a.T)

    labels = np.array([[0.1, 0.2], [0.3, -0.1], [1.0, 0.0]])
    box = (np.array([0.0, -1.0]), np.array([2.0, 1.0]))
    jac = reference_jacobians(Toy(), labels, box)
    expected = np.cos(labels @ a.numpy().T)[:, :, None] * a.numpy()[None] * np.array([2.0, 2.0])
    np.testing.assert_allclose(jac, expected, rtol=1e-12)
    fd = reference_jacobians(lambda v: np.sin(v @ a.numpy().T), labels, box, step=1e-4)
    np.testing.assert_allclose(fd, expected, rtol=1e-6, atol=1e-9)


def test_reference_jacobians_from_a_file_of_perturbed_spectra(problem, tmp_path):
    deg, names, grid = problem["library"], problem["names"], problem["grid"]
    labels, flux = problem["draw"](4, 8)
    delta = np.array([20.0, 0.02, 0.01])  # K, dex, dex
    plus = np.empty((4, 3, grid.size))
    minus = np.empty_like(plus)
    for k in range(3):
        up, down = labels.copy(), labels.copy()
        up[:, k] += delta[k]
        down[:, k] -= delta[k]
        plus[:, k] = deg.generate(up, extrapolate=True, dtype=np.float64).flux
        minus[:, k] = deg.generate(down, extrapolate=True, dtype=np.float64).flux
    exact = reference_jacobians(deg, labels, (LO, HI))
    scale = np.abs(exact).max()
    central = jacobians_from_perturbed(flux, plus, delta, (LO, HI), minus_flux=minus)
    one_sided = jacobians_from_perturbed(flux, plus, delta, (LO, HI))
    err_central = np.abs(central - exact).max() / scale
    err_one_sided = np.abs(one_sided - exact).max() / scale
    assert err_central < 1e-4 < err_one_sided < 0.05, (err_central, err_one_sided)
    path = tmp_path / "differential.npz"
    np.savez(
        path,
        labels=labels,
        label_names=np.array(names),
        wavelength=grid,
        flux=flux,
        perturbed_flux=plus,
        minus_flux=minus,
        delta=delta,
    )
    emu = MLPEmulator(names, LO, HI, grid, hidden=(4,))
    read_labels, read = load_reference_jacobians(path, emu)
    np.testing.assert_array_equal(read_labels, labels)
    np.testing.assert_allclose(read, central, rtol=1e-6, atol=1e-9)
    other = MLPEmulator(names[::-1], LO, HI, grid, hidden=(4,))
    with pytest.raises(ValueError, match="has labels"):
        load_reference_jacobians(path, other)
    with pytest.raises(ValueError, match="non-zero"):
        jacobians_from_perturbed(flux, plus, [1.0, 0.0, 1.0], (LO, HI))


def test_jacobian_error_is_the_per_label_relative_norm():
    ref = np.zeros((2, 3, 2))
    ref[..., 0] = 1.0
    ref[..., 1] = 2.0
    emu = ref.copy()
    emu[0, :, 0] += 0.1  # 3 entries off by 0.1 out of a norm sqrt(6)
    np.testing.assert_allclose(jacobian_error(emu, ref), [0.1 * np.sqrt(3) / np.sqrt(6), 0.0])
    with pytest.raises(ValueError, match="both be"):
        jacobian_error(emu[..., :1], ref)


def test_the_gradient_prior_reduces_the_held_out_jacobian_error(problem):
    deg, names, grid = problem["library"], problem["names"], problem["grid"]
    labels, flux = problem["draw"](40, 1)  # sparse: 40 spectra in 3 labels
    test_labels, test_flux = problem["draw"](200, 2)
    ref_train = reference_jacobians(deg, labels, (LO, HI))
    ref_test = reference_jacobians(deg, test_labels, (LO, HI))
    results = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        emu = MLPEmulator(names, LO, HI, grid, hidden=(64, 64))
        history = train_emulator(
            emu,
            labels,
            flux,
            reference_labels=labels,
            reference_jacobians=ref_train,
            gradient_weight=weight,
            epochs=300,
            batch_size=40,
            learning_rate=3e-3,
            validation={
                "labels": test_labels,
                "flux": test_flux,
                "reference_labels": test_labels,
                "reference_jacobians": ref_test,
            },
            validate_every=50,
        )
        results[weight] = (np.array(history["val_jacobian_error"][-1]), history)
    off, on = results[0.0][0], results[1.0][0]
    # measured (teff, logg, fe_h): [0.22, 0.34, 0.16] without the prior,
    # [0.085, 0.16, 0.085] with it; held-out flux RMS 0.0086 -> 0.0041
    assert np.all(on < 0.7 * off), (off, on)
    assert np.all(off > 0.1)
    # the prior also helps the held-out flux where the training set is sparse
    assert results[1.0][1]["val_flux_rms"][-1] < results[0.0][1]["val_flux_rms"][-1]
    assert results[1.0][1]["jacobian_loss"][-1] > 0 and results[0.0][1]["jacobian_loss"][-1] == 0


def test_training_is_deterministic_and_zero_weight_pixels_are_ignored(problem):
    names, grid = problem["names"], problem["grid"]
    labels, flux = problem["draw"](64, 3)
    weights = np.ones(grid.size)
    weights[:20] = 0.0
    corrupted = flux.copy()
    corrupted[:, :20] += 5.0  # garbage where the noise model gives no weight
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        emu = MLPEmulator(names, LO, HI, grid, hidden=(16,))
        head0 = emu.head.weight.detach().clone()
        history = train_emulator(
            emu, labels, corrupted, weights=weights, epochs=5, batch_size=16, seed=11
        )
        runs.append((emu, history, head0))
    (a, ha, head0), (b, hb, _) = runs
    assert ha["loss"] == hb["loss"] and len(ha["loss"]) == 5
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # Adam moves no head row of a zero-weight pixel; all others moved
    assert torch.equal(a.head.weight[:20], head0[:20])
    assert (a.head.weight[20:] - head0[20:]).abs().amax(dim=1).min() > 0
    assert ha["loss"][-1] < ha["loss"][0]


def test_a_library_with_ivar_trains_like_its_arrays(problem):
    deg, names, grid = problem["library"], problem["names"], problem["grid"]
    table = deg.sample_labels(32, ranges=dict(zip(names, zip(LO, HI, strict=True), strict=True)))
    library = deg.generate(table).add_noise(100.0, seed=3)
    assert library.ivar is not None
    histories = []
    for args in (
        (library, None),
        (library.label_array(names), library.flux),
    ):
        torch.manual_seed(4)
        emu = MLPEmulator(names, LO, HI, grid, hidden=(8,))
        weights = None if args[1] is None else library.ivar
        histories.append(train_emulator(emu, *args, weights=weights, epochs=3, batch_size=8))
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="flux must be None"):
        train_emulator(emu, library, library.flux, epochs=1)
    with pytest.raises(ValueError, match="not the emulator's"):
        train_emulator(MLPEmulator(names, LO, HI, grid[:-1], hidden=(4,)), library, None)


@pytest.fixture(scope="module")
def architectures(problem):
    """The same problem trained with the MLP and the transformer for 100 epochs (seed 0)."""
    names, grid = problem["names"], problem["grid"]
    labels, flux = problem["draw"](150, 1)
    test_labels, test_flux = problem["draw"](200, 2)
    make = {
        "mlp": lambda: MLPEmulator(names, LO, HI, grid, hidden=(64, 64)),
        "transformer": lambda: TransformerEmulator(
            names, LO, HI, grid, chunk=16, d_model=32, n_heads=4, n_layers=2
        ),
    }
    out = {}
    for kind, build in make.items():
        torch.manual_seed(0)
        emu = build()
        history = train_emulator(
            emu,
            labels,
            flux,
            epochs=100,
            batch_size=50,
            learning_rate=1e-2,
            validation=(test_labels, test_flux),
            validate_every=100,
        )
        out[kind] = {"emu": emu, "rms": history["val_flux_rms"][-1], "time": history["time_s"][-1]}
    out["data"] = (labels, flux, test_labels, test_flux)
    return out


def test_at_this_tiny_scale_the_mlp_beats_the_transformer(architectures):
    # What is measured (193 px, 150 spectra, 3 labels, 300 Adam steps, equal
    # epochs): held-out RMS 0.0055 (MLP, 17k weights) and 0.0073 (transformer,
    # 27k weights); over seeds 0-2 the transformer was 1.2-1.34x worse and
    # ~10x slower per epoch on one thread. Three smooth labels need no
    # attention between wavelength chunks, and the per-chunk bottleneck of
    # d_model features costs accuracy; the transformer is not the better
    # emulator at this scale, though it learns the spectra to < 1 %.
    mlp, tr = architectures["mlp"]["rms"], architectures["transformer"]["rms"]
    assert mlp < 0.007 and tr < 0.009, (mlp, tr)
    assert mlp < tr < 1.6 * mlp, (mlp, tr)


def test_bad_inputs_raise_clear_errors(problem):
    names, grid = problem["names"], problem["grid"]
    labels, flux = problem["draw"](8, 4)
    emu = MLPEmulator(names, LO, HI, grid, hidden=(4,))
    with pytest.raises(ValueError, match="needs reference_labels"):
        train_emulator(emu, labels, flux, gradient_weight=1.0, epochs=1)
    with pytest.raises(ValueError, match=r"flux must have shape \(8, 193\)"):
        train_emulator(emu, labels, flux[:, :-1], epochs=1)
    with pytest.raises(ValueError, match="non-finite"):
        bad = flux.copy()
        bad[0, 0] = np.nan
        train_emulator(emu, labels, bad, epochs=1)
    with pytest.raises(ValueError, match="weights must be"):
        train_emulator(emu, labels, flux, weights=-np.ones(grid.size), epochs=1)
    with pytest.raises(ValueError, match="reference_jacobians must have shape"):
        train_emulator(
            emu,
            labels,
            flux,
            reference_labels=labels,
            reference_jacobians=np.zeros((8, 193, 2)),
            gradient_weight=1.0,
            epochs=1,
        )
    with pytest.raises(ValueError, match="schedule"):
        train_emulator(emu, labels, flux, epochs=1, schedule="step")
    rng = np.random.default_rng(0)
    payne = PayneEmulator(
        rng.normal(size=(193, 2, 3)),
        np.zeros((193, 2)),
        np.zeros((193, 2)),
        np.ones(193),
        names,
        LO,
        HI,
        grid,
    )
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_emulator(payne, labels, flux, epochs=1)
