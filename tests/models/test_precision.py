"""Mixed-precision inference: bf16 close to fp32 on the CPU, clear errors, no pinning on CPU.

fp32 itself is pinned bit for bit by ``test_default_model.py``. The bf16
tolerances are ~2x the largest |bf16 - fp32| that ``benchmarks/precision.py``
measured for the shipped model on the 581 MILES training stars and the 25
LAMOST spectra (22 K, 0.035 dex, 0.012 dex; robust sigma 1.2-1.6 K,
0.0025-0.0054 dex, 0.0016-0.0018 dex), far below the labels' uncertainties.
"""

import numpy as np
import pytest
import torch
from fake_model import fake_model

from stellarml import derive_labels, read_model
from stellarml.data import example_spectra
from stellarml.models.base import PRECISIONS, LabelModelBase, check_precision
from stellarml.models.remap import inference
from stellarml.spectra import prepare

#: Largest |bf16 - fp32| allowed per label (label units) and for the median of |difference|.
MAX_DIFF = {"teff": 50.0, "logg": 0.08, "fe_h": 0.03}
MEDIAN_DIFF = {"teff": 5.0, "logg": 0.01, "fe_h": 0.005}


@pytest.fixture(scope="module")
def model():
    return read_model()


@pytest.fixture(scope="module")
def spectra():
    return example_spectra()[0]


def test_precisions_and_check():
    assert PRECISIONS == ("fp32", "bf16", "fp16")
    for p in PRECISIONS:
        assert check_precision(p) == p
    for bad in ("float32", "BF16", None, 16):
        with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16', 'fp16'"):
            check_precision(bad)


def test_bf16_on_cpu_is_close_to_fp32(model, spectra):
    a = derive_labels(spectra, model=model, device="cpu", calibrate=False)
    b = derive_labels(spectra, model=model, device="cpu", calibrate=False, precision="bf16")
    np.testing.assert_array_equal(np.asarray(a["flags"]), np.asarray(b["flags"]))
    for name in model.label_names:
        for col in (name, f"{name}_p16", f"{name}_p84"):
            d = np.abs(b[col].value - a[col].value)
            assert np.all(np.isfinite(d)), col
            assert d.max() < MAX_DIFF[name], (col, d.max())
            assert np.median(d) < MEDIAN_DIFF[name], (col, np.median(d))
        assert b[name].dtype == a[name].dtype


def test_bf16_pdfs_and_summaries_are_float32(model, spectra):
    batch = prepare(spectra, model.preparation)
    out = model.predict_prepared(batch.flux, batch.ivar, device="cpu", precision="bf16")
    for name in model.label_names:
        pdf = out["pdf"][name]
        assert pdf.dtype == np.float32
        np.testing.assert_allclose(pdf.sum(axis=1), 1.0, rtol=1e-5)
        assert out["summary"][name]["median"].dtype == np.float64
    assert out["embedding"].dtype == np.float32
    assert np.all(np.isfinite(out["domain_distance"]))
    # one network (a RemapModel) as well as the ensemble
    member = model.members[0] if hasattr(model, "members") else model
    one = member.predict_prepared(batch.flux, batch.ivar, device="cpu", precision="bf16")
    ref = member.predict_prepared(batch.flux, batch.ivar, device="cpu")
    d = np.abs(one["summary"]["teff"]["median"] - ref["summary"]["teff"]["median"])
    assert d.max() < MAX_DIFF["teff"]


def test_fp16_on_cpu_raises(model, spectra):
    with pytest.raises(ValueError, match="precision='fp16' needs a CUDA device"):
        derive_labels(spectra, model=model, device="cpu", precision="fp16")
    batch = prepare(spectra, model.preparation)
    with pytest.raises(ValueError, match="CUDA-only"):
        model.predict_posterior(batch, device="cpu", precision="fp16")


def test_invalid_precision_names_the_choices(model, spectra):
    match = "precision must be one of 'fp32', 'bf16', 'fp16', got 'half'"
    with pytest.raises(ValueError, match=match):
        derive_labels(spectra, model=model, device="cpu", precision="half")
    batch = prepare(spectra, model.preparation)
    with pytest.raises(ValueError, match=match):
        model.predict_posterior(batch, device="cpu", precision="half")
    with pytest.raises(ValueError, match=match):
        model.predict_prepared(batch.flux, batch.ivar, device="cpu", precision="half")


def test_model_without_precision_support():
    """A model whose predict_posterior has no ``precision`` works at fp32 only, clearly."""
    model = fake_model()
    spec = example_spectra()[0]
    table = derive_labels(spec, model=model)
    assert np.all(np.isfinite(table["teff"].value))
    same = derive_labels(spec, model=model, precision="fp32")
    np.testing.assert_array_equal(same["teff"].value, table["teff"].value)
    with pytest.raises(ValueError, match=r"FakeModel does not support precision='bf16'.*'fp32'"):
        derive_labels(spec, model=model, precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        derive_labels(spec, model=model, precision="int8")


class _BaseModel(LabelModelBase):
    """A LabelModelBase subclass that declares no reduced precision."""

    method = "fake"

    def __init__(self):
        self._fake = fake_model()
        self.name = "based"
        self.label_specs = self._fake.label_specs
        self.preparation = self._fake.preparation

    def _posterior(self, batch, *, device, batch_size):
        return self._fake.predict_posterior(batch)


def test_label_model_base_without_precision_support():
    model = _BaseModel()
    spec = example_spectra()[0]
    table = derive_labels(spec, model=model)
    assert len(table) == len(spec.flux)
    batch = prepare(spec, model.preparation)
    assert len(model.predict_posterior(batch, precision="fp32")) == len(spec.flux)
    with pytest.raises(ValueError, match="_BaseModel supports precision 'fp32' only, not 'bf16'"):
        model.predict_posterior(batch, precision="bf16")
    with pytest.raises(ValueError, match=r"_BaseModel does not support precision='fp16'"):
        derive_labels(spec, model=model, precision="fp16")


def test_no_pinning_on_cpu(model, spectra, monkeypatch):
    def fail(self, *args, **kwargs):
        raise AssertionError("pin_memory called on the CPU path")

    monkeypatch.setattr(torch.Tensor, "pin_memory", fail)
    for precision in ("fp32", "bf16"):
        table = derive_labels(spectra, model=model, device="cpu", precision=precision)
        assert len(table) == len(spectra.flux)
    t = torch.zeros(3, 4)
    assert inference._pinned(t, torch.device("cpu")) is t


def test_pinning_is_asked_for_cuda_only(monkeypatch):
    """The CUDA branch (not run here without a GPU): CPU tensors get pinned once."""
    calls = []

    def pin(self, *args, **kwargs):
        calls.append(self)
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self, *a, **k: False)
    t = torch.zeros(3, 4)
    assert inference._pinned(t, torch.device("cuda")) is t
    assert len(calls) == 1
    assert inference._pinned(t, torch.device("cpu")) is t and len(calls) == 1


def test_autocast_contexts():
    cpu = torch.device("cpu")
    assert not isinstance(inference._autocast("fp32", cpu), torch.autocast)
    ctx = inference._autocast("bf16", cpu)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="CUDA"):
        inference._autocast("fp16", cpu)
    with pytest.raises(ValueError, match="supported on CPU and CUDA"):
        inference._autocast("bf16", torch.device("meta"))


def test_cpu_inference_uses_all_torch_threads(model, spectra):
    """Inference neither lowers torch's thread count nor leaves it changed."""
    n = torch.get_num_threads()
    derive_labels(spectra, model=model, device="cpu", precision="bf16")
    assert torch.get_num_threads() == n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision_close_to_cpu_fp32(model, spectra, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    a = derive_labels(spectra, model=model, device="cpu", calibrate=False)
    b = derive_labels(spectra, model=model, device="cuda", calibrate=False, precision=precision)
    for name in model.label_names:
        assert np.abs(b[name].value - a[name].value).max() < MAX_DIFF[name]
