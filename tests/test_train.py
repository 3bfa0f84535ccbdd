"""edgeconv/train: IR -> torch module semantics, BatchNorm folding, `edgeconv train`, parity --labels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="tests/test_train.py needs PyTorch: pip install 'edgeconv[train]'")

from edgeconv.core import reference  # noqa: E402
from edgeconv.core.graph import analyze  # noqa: E402
from edgeconv.core.ir import (  # noqa: E402
    Activation,
    Add,
    AvgPool,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    InputSpec,
    MaxPool,
    Softmax,
    chain,
)
from edgeconv.core.optable import UnsupportedOp  # noqa: E402
from edgeconv.core.weights import init_weights  # noqa: E402
from edgeconv.plan.planner import Budgets, plan  # noqa: E402
from edgeconv.plan.recipes import load_recipe  # noqa: E402
from edgeconv.train import to_module, weights_from_module  # noqa: E402


def _odd_model():
    """Every op, odd SAME pads (bottom/right pixel), non-square windows, a dense after a map."""
    return chain(
        "odd",
        InputSpec(9, 8, 2),
        [
            Conv2d("c1", 8, (3, 3), (2, 2), "same", Activation.RELU6),  # H 8 -> 4: one pad pixel, at the bottom
            DepthwiseConv2d("dw", (3, 5), (1, 2), "same", Activation.RELU),
            MaxPool("mp", (3, 3), (2, 2), "same"),
            Conv2d("c2", 8, (1, 1), (1, 1), 0),
            Add("add", ("mp", "c2"), Activation.RELU),
            AvgPool("ap", (2, 3), (1, 1), "same"),
            Dense("fc", 5),
            Softmax("sm"),
        ],
    )


MODELS = {
    "resnet8": lambda: load_recipe("resnet8"),
    "ds_cnn": lambda: load_recipe("ds_cnn"),
    "vgg_small": lambda: load_recipe("vgg_small"),
    "odd": _odd_model,
    "plan_8x8x1_64KB": lambda: plan(InputSpec(8, 8, 1), 10, Budgets(64_000, 256_000)).model,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_module_matches_reference_after_bn_fold(name):
    analysis = analyze(MODELS[name]())
    module = to_module(analysis, init_weights(analysis, 1))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # BatchNorm statistics far from identity, so the fold is really tested
        for block in module.weighted_blocks():
            bn = getattr(block, "bn", None)
            if bn is not None:
                n = bn.num_features
                bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
                bn.bias.copy_(0.4 * torch.rand(n, generator=gen) - 0.2)
                bn.running_mean.copy_(0.6 * torch.rand(n, generator=gen) - 0.3)
                bn.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
    module.eval()
    m = analysis.model
    x = (
        np.random.default_rng(0)
        .standard_normal((3, m.input.height, m.input.width, m.input.channels))
        .astype(np.float32)
    )
    with torch.no_grad():
        out = module(torch.from_numpy(x)).numpy()
        logits = module.logits(torch.from_numpy(x)).numpy()
    folded = weights_from_module(module, analysis)
    assert set(folded) == set(init_weights(analysis, 0))
    ref = reference.run(analysis, folded, x, keep_all=True)
    assert out.shape == ref[m.output].shape
    assert np.abs(out - ref[m.output]).max() <= 1e-5 * np.abs(ref[m.output]).max()
    pre = ref[m.layers[-1].inputs[0]].reshape(len(x), -1)
    assert np.abs(logits - pre).max() <= 1e-5 * np.abs(pre).max()


def test_unknown_op_is_named():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Mystery:
        name: str = "m1"
        inputs: tuple = ("input",)
        op = "mystery"

    from edgeconv.train.module import TORCH_MODULES

    with pytest.raises(UnsupportedOp, match=r"m1: the torch module pass has no handler for op 'mystery'"):
        TORCH_MODULES.handler(Mystery())
