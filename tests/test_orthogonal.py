"""OFT and BOFT refuse what PEFT would silently change: a block size that does not divide a layer's width
(OFT: PEFT picks another one), a butterfly factor without PEFT's CUDA extension (PEFT trains one factor)."""

from __future__ import annotations

import pytest
import torch

from tunebench.core.errors import SpecError, UnsupportedError
from tunebench.core.typed import build
from tunebench.estimate import estimate, resolve_arch, resolve_device
from tunebench.methods import METHODS, Context
from tunebench.models import resolve_model
from tunebench.tasks import build_task
from tunebench.train.budget import Budget


def _prepare(name: str, **options):
    task = build_task("arithmetic", {"digits": 1, "train_size": 8, "dev_size": 2, "test_size": 2})
    ctx = Context(resolve_model("tiny-llama"), task, task.splits(), Budget(steps=1), seed=0,
                  device=torch.device("cpu"), bf16=False)  # fmt: skip
    cls = METHODS.get(name)
    method = cls(build(cls.Options, options, name))
    method.prepare(ctx)
    return method


def test_an_oft_block_size_that_does_not_divide_the_widths_is_refused_with_the_sizes_that_do():
    # tiny-llama's adapted matrices read 64 (q, k, v, o, gate, up) or 128 (down) values
    with pytest.raises(UnsupportedError, match=r"oft.block_size 24 .* 64, 128, .*: 2, 4, 8, 16, 32, 64"):
        _prepare("oft", block_size=24)
    oft = _prepare("oft", block_size=16)
    layer = next(m for m in oft.model.modules() if hasattr(m, "oft_block_size"))
    assert layer.oft_block_size["default"] == 16


def test_the_estimator_refuses_the_same_block_sizes():
    arch, gpu = resolve_arch("smollm2-135m"), resolve_device("A100-80GB")  # widths 576 and 1536
    with pytest.raises(SpecError, match=r"block_size: block_size = 7 does not divide .*576, 1536.*: 1, 2, 3"):
        estimate(arch, "oft", gpu, options={"block_size": 7})
    with pytest.raises(SpecError, match=r"block_size × 2\^\(butterfly_factor - 1\) = 128"):
        estimate(arch, "boft", gpu, options={"block_size": 64, "butterfly_factor": 2})
    assert estimate(arch, "oft", gpu, options={"block_size": 32}).trainable > 0


def test_boft_keeps_dense_permutations_the_estimate_declares():
    arch, gpu = resolve_arch("7B"), resolve_device("A100-80GB")
    one = estimate(arch, "boft", gpu)
    # one 4096² or 11008² fp32 permutation per adapted matrix and block: about 28 GB at 7B
    assert 27e9 < one.memory["buffers"] < 30e9
    two = estimate(arch, "boft", gpu, options={"butterfly_factor": 2})
    assert two.memory["buffers"] == 2 * one.memory["buffers"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="PEFT builds its BOFT extension where CUDA is")
def test_a_butterfly_factor_peft_would_drop_is_refused():
    with pytest.raises(UnsupportedError, match="butterfly_factor 2 needs PEFT's BOFT CUDA extension"):
        _prepare("boft", block_size=4, butterfly_factor=2)
