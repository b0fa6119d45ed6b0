"""Tests of the freezing helpers used for fine-tuning."""

import pytest
import torch
from torch import nn

from stellarml.models import RemapNet
from stellarml.training import (
    FREEZE_PRESETS,
    Trainer,
    freeze,
    frozen_prefixes,
    resolve_freeze,
    set_train_mode,
    trainable_parameters,
    unfreeze,
)

ARCH = {
    "stem_channels": 4,
    "stem_kernel": 3,
    "stem_stride": 2,
    "stage_channels": (6, 8),
    "stage_blocks": (1, 2),
    "kernel_size": 3,
    "pool_length": 2,
    "embedding_dim": 8,
    "dropout": 0.2,
}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def net():
    torch.manual_seed(0)
    return RemapNet({"teff": 10, "logg": 6}, **ARCH)


def test_presets_resolve_and_unknown_names_fail():
    module = net()
    assert resolve_freeze("backbone", module) == FREEZE_PRESETS["backbone"]
    assert resolve_freeze(None, module) == ()
    assert resolve_freeze(["heads.teff", "stages.1.0"], module) == ("heads.teff", "stages.1.0")
    with pytest.raises(ValueError, match=r"match nothing.*top-level modules are \['embedding'"):
        resolve_freeze(["stage"], module)  # a prefix must end at a name boundary
    with pytest.raises(ValueError, match="unknown freeze choice"):
        resolve_freeze("everything", module)
    with pytest.raises(TypeError, match="non-empty strings"):
        resolve_freeze([""], module)


def test_freeze_sets_requires_grad_and_keeps_frozen_modules_in_eval_mode():
    module = net()
    names = freeze(module, ("stem", "stages.0"))
    assert names and all(n.startswith(("stem.", "stages.0.")) for n in names)
    assert frozen_prefixes(module) == ("stem", "stages.0")
    for name, p in module.named_parameters():
        assert p.requires_grad == (not name.startswith(("stem.", "stages.0.")))
    wrapper = nn.ModuleDict({"net": module})  # frozen prefixes are found inside wrappers too
    set_train_mode(wrapper)
    assert not module.stem.training and not module.stem.norm.training
    assert not module.stages[0].training
    assert module.stages[1].training and module.heads.training
    assert len(trainable_parameters(module)) == sum(
        1 for n, _ in module.named_parameters() if not n.startswith(("stem.", "stages.0."))
    )
    unfreeze(module)
    assert frozen_prefixes(module) == ()
    assert all(p.requires_grad for p in module.parameters())


def test_training_leaves_frozen_weights_and_statistics_untouched():
    module = net()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    freeze(module, FREEZE_PRESETS["backbone"])
    gen = torch.Generator().manual_seed(1)
    flux = 1 - 0.3 * torch.rand(64, 40, generator=gen)
    ivar = torch.full((64, 40), 100.0)
    target = torch.randint(0, 10, (64,), generator=gen)

    def loss(m, batch):
        f, iv, t = batch
        logits, _ = m(f, iv)
        return nn.functional.cross_entropy(logits[0], t)

    Trainer(max_epochs=2, batch_size=16, lr=1e-2, progress=False).fit(
        module, loss, (flux, ivar, target)
    )
    after = module.state_dict()
    frozen = ("stem.", "stages.", "embedding.")
    for name, value in before.items():
        if name.startswith(frozen):  # weights and batch-norm running statistics alike
            assert torch.equal(value, after[name]), name
    assert not torch.equal(before["heads.teff.2.weight"], after["heads.teff.2.weight"])
    # the logg head gets no gradient from this loss, so it stays as it was
    assert torch.equal(before["heads.logg.2.weight"], after["heads.logg.2.weight"])
