"""Tests of the training loop, checkpoints and spectrum augmentation."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from stellarml.training import (
    SpectrumAugmenter,
    Trainer,
    load_state_dict_npz,
    save_state_dict_npz,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread is faster and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def regression_data(n=256, npix=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, npix, generator=gen)
    w = torch.linspace(-1, 1, npix)
    y = (x * w).sum(1, keepdim=True) + 0.5 * x[:, :4].square().sum(1, keepdim=True)
    return x, y


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Unflatten(1, (1, 32)),
        nn.Conv1d(1, 4, 3, padding=1),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(128, 1),
    )


def mse(module, batch):
    x, y = batch
    return {"loss": nn.functional.mse_loss(module(x), y), "extra": torch.tensor(1.0)}


def test_training_reduces_loss_and_logs_history():
    x, y = regression_data()
    xv, yv = regression_data(64, seed=1)
    net = small_net()
    trainer = Trainer(max_epochs=30, batch_size=32, lr=1e-2, patience=None, progress=False)
    history = trainer.fit(net, mse, (x, y), (xv, yv))
    assert len(history) == 30
    assert history[-1]["val_loss"] < 0.3 * history[0]["val_loss"]
    assert set(history[0]) >= {"epoch", "loss", "extra", "val_loss", "val_extra", "lr", "time_s"}
    assert history[0]["extra"] == pytest.approx(1.0)
    assert trainer.stop_reason_ == "max_epochs"
    assert trainer.best_loss_ == min(h["val_loss"] for h in history)


def test_same_seed_gives_identical_weights():
    x, y = regression_data()
    aug_calls = []

    def augment(batch, generator):
        aug_calls.append(len(batch[0]))
        xb, yb = batch
        return xb + 0.1 * torch.randn(xb.shape, generator=generator), yb

    def run(seed):
        net = small_net(0)
        Trainer(max_epochs=3, batch_size=50, seed=seed, progress=False, augment=augment).fit(
            net, mse, (x, y)
        )
        return net.state_dict()

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # the hook runs once per training batch: 256 = 5 * 50 + 6
    assert aug_calls[:6] == [50, 50, 50, 50, 50, 6]
    assert len(aug_calls) == 3 * 3 * 6


def test_early_stopping_restores_the_best_weights(tmp_path):
    x, y = regression_data()
    xv = torch.randn(64, 32)
    yv = 100 * torch.randn(64, 1)  # unlearnable: the validation loss soon stops improving
    net = small_net()
    trainer = Trainer(
        max_epochs=50, batch_size=32, lr=1e-2, patience=3, progress=False, checkpoint_dir=tmp_path
    )
    history = trainer.fit(net, mse, (x, y), (xv, yv))
    assert trainer.stop_reason_ == "early_stopping"
    assert len(history) == trainer.best_epoch_ + 3 < 50
    best = load_state_dict_npz(tmp_path / "best.npz")
    state = net.state_dict()
    assert all(torch.equal(best[k], state[k]) for k in state)
    last = load_state_dict_npz(tmp_path / "last.npz")
    assert not all(torch.equal(last[k], state[k]) for k in state)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in saved] == [h["epoch"] for h in history]
    # the restored weights reproduce the best validation loss
    net.eval()
    with torch.no_grad():
        val = nn.functional.mse_loss(net(xv), yv).item()
    assert val == pytest.approx(trainer.best_loss_, rel=1e-5)


def test_npz_checkpoints_hold_plain_arrays(tmp_path):
    net = small_net()
    save_state_dict_npz(tmp_path / "w.npz", net.state_dict())
    with np.load(tmp_path / "w.npz", allow_pickle=False) as data:
        assert set(data.files) == set(net.state_dict())
        assert data["1.weight"].dtype == np.float32
    loaded = load_state_dict_npz(tmp_path / "w.npz")
    assert loaded["2.num_batches_tracked"].dtype == torch.int64
    small_net(1).load_state_dict(loaded)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_learning_rate_schedules(schedule):
    x, y = regression_data(64)
    lrs = []

    def record(module, batch):
        lrs.append(optimizer_lr[0]())
        return mse(module, batch)

    trainer = Trainer(
        max_epochs=10, batch_size=16, lr=1e-2, schedule=schedule, progress=False, patience=None
    )
    net = small_net()
    original = trainer._optimizer

    def capture(module):
        opt = original(module)
        optimizer_lr[0] = lambda: opt.param_groups[0]["lr"]
        return opt

    optimizer_lr = [None]
    trainer._optimizer = capture
    trainer.fit(net, record, (x, y))
    lrs = np.array(lrs)
    if schedule == "constant":
        assert np.all(lrs == 1e-2)
    elif schedule == "cosine":
        assert lrs[0] == pytest.approx(1e-2) and lrs[-1] < 1e-4
        assert np.all(np.diff(lrs) <= 1e-12)
    else:
        assert lrs[0] == pytest.approx(1e-2 / 25)
        assert lrs.max() == pytest.approx(1e-2, rel=1e-3)
        assert 0 < lrs.argmax() < len(lrs) // 3
        assert lrs[-1] < 1e-5


@pytest.mark.parametrize(("n", "epochs"), [(160, 1), (32, 1), (16, 1), (48, 2)])
def test_onecycle_survives_very_short_schedules(n, epochs):
    # 160 spectra in batches of 16 for one epoch: 10 steps, a 0.1 warm-up is one step,
    # which made torch's OneCycleLR divide by zero; 2-3 steps are too few for a cycle
    x, y = regression_data(n)
    trainer = Trainer(
        max_epochs=epochs, batch_size=16, lr=1e-2, warmup_fraction=0.1, progress=False
    )
    history = trainer.fit(small_net(), mse, (x, y))
    assert len(history) == epochs
    assert np.isfinite(history[-1]["loss"])


def test_non_finite_loss_is_an_error():
    x, y = regression_data(64)
    y[3] = math.nan
    with pytest.raises(FloatingPointError, match="epoch 1"):
        Trainer(max_epochs=2, batch_size=64, progress=False).fit(small_net(), mse, (x, y))


def test_progress_bar_and_bad_arguments(capsys):
    x, y = regression_data(64)
    Trainer(max_epochs=2, batch_size=32, progress=True).fit(small_net(), mse, (x, y))
    assert "training" in capsys.readouterr().err
    with pytest.raises(ValueError, match="schedule"):
        Trainer(schedule="step")
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(batch_size=1)
    with pytest.raises(TypeError, match="augment"):
        Trainer(augment=3)
    with pytest.raises(ValueError, match="first dimension"):
        Trainer(progress=False).fit(small_net(), mse, (x, y[:10]))
    with pytest.raises(TypeError, match="loss_fn must return"):
        Trainer(max_epochs=1, progress=False).fit(small_net(), lambda m, b: 1.0, (x, y))
    net = small_net()
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(progress=False).fit(net, mse, (x, y))
    with pytest.raises(RuntimeError, match="CUDA"):
        if not torch.cuda.is_available():
            Trainer(device="cuda", progress=False).fit(small_net(), mse, (x, y))
        else:
            raise RuntimeError("CUDA is available: nothing to check")


def test_augmenter_noise_matches_the_requested_snr():
    n, npix = 400, 500
    flux = torch.ones(n, npix)
    ivar = torch.full((n, npix), 1e12)
    ivar[:, :10] = 0.0
    aug = SpectrumAugmenter(snr=(50.0, 50.0), rv_jitter=0.0)
    f2, iv2 = aug((flux, ivar), torch.Generator().manual_seed(0))
    good = ivar > 0
    assert torch.equal(iv2[~good], torch.zeros_like(iv2[~good]))
    assert torch.equal(f2[~good], torch.zeros_like(f2[~good]))
    assert torch.allclose(iv2[good], torch.full_like(iv2[good], 2500.0), rtol=1e-4)
    assert (f2[good] - 1).std().item() == pytest.approx(1 / 50, rel=0.02)
    # existing noise adds in quadrature: 1/ivar = 1/400 + 1/2500
    _, iv3 = aug((flux, torch.full((n, npix), 400.0)), torch.Generator().manual_seed(0))
    assert torch.allclose(iv3, torch.full_like(iv3, 1 / (1 / 400 + 1 / 2500)), rtol=1e-4)
    # log-uniform S/N draws within the range
    wide = SpectrumAugmenter(snr=(10.0, 1000.0), rv_jitter=0.0)
    _, iv4 = wide((flux, ivar), torch.Generator().manual_seed(1))
    snr = iv4[:, 100].sqrt()
    assert snr.min() >= 10 * 0.999 and snr.max() <= 1000 * 1.001
    assert abs(snr.log10().mean().item() - 2.0) < 0.15


def test_augmenter_shifts_lines_and_is_reproducible():
    npix = 200
    x = torch.arange(npix, dtype=torch.float32)
    flux = (1 - 0.5 * torch.exp(-0.5 * ((x - 100) / 3) ** 2)).repeat(64, 1)
    ivar = torch.full_like(flux, 1e12)
    aug = SpectrumAugmenter(snr=None, rv_jitter=2.0)
    out, out_ivar = aug((flux, ivar), torch.Generator().manual_seed(3))
    again, _ = aug((flux, ivar), torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    depth = (1 - out) * (out_ivar > 0)  # pixels shifted in from outside are masked
    centroid = (depth * x).sum(1) / depth.sum(1)
    shifts = centroid - 100
    assert shifts.std().item() == pytest.approx(2.0, rel=0.25)
    # the shift is a pure translation: depth and width are kept
    assert torch.allclose(depth.sum(1), torch.full((64,), depth[0].sum().item()), rtol=0.01)
    # pixels shifted in from outside the grid are masked
    big = SpectrumAugmenter(snr=None, rv_jitter=30.0)
    _, iv_big = big((flux, ivar), torch.Generator().manual_seed(4))
    assert (iv_big == 0).any()
    assert (out_ivar[:, 20:-20] > 0).all()
    assert SpectrumAugmenter(continuum=0.05).to_dict()["continuum"] == 0.05


def test_augmenter_continuum_distortion_is_smooth():
    flux = torch.ones(50, 300)
    ivar = torch.full_like(flux, 1e12)
    aug = SpectrumAugmenter(snr=None, rv_jitter=0.0, continuum=0.05, continuum_degree=3)
    out, _ = aug((flux, ivar), torch.Generator().manual_seed(0))
    assert 0.005 < (out - 1).abs().mean() < 0.1
    second = out[:, 2:] - 2 * out[:, 1:-1] + out[:, :-2]
    assert second.abs().max() < 1e-3
    with pytest.raises(ValueError, match="snr"):
        SpectrumAugmenter(snr=(0.0, 10.0))


def test_a_batch_of_one_is_merged_into_the_previous_batch():
    x, y = regression_data(101)
    sizes = []

    def count(module, batch):
        if module.training:
            sizes.append(len(batch[0]))
        return mse(module, batch)

    Trainer(max_epochs=1, batch_size=50, progress=False).fit(small_net(), count, (x, y))
    assert sizes == [50, 51]
