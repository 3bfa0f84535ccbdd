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
    Concat,
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
            Concat("cat", ("add", "c2")),
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


# ---- edgeconv train on a slice of sklearn's digits ------------------------------------------

DIGITS_TRAIN, DIGITS_VAL = 600, 200


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    tr, va = idx[:DIGITS_TRAIN], idx[DIGITS_TRAIN : DIGITS_TRAIN + DIGITS_VAL]
    root = tmp_path_factory.mktemp("digits")
    np.savez(root / "train.npz", x=x[tr], y=y[tr])
    np.savez(root / "val.npz", x=x[va], y=y[va])
    np.save(root / "val_y.npy", y[va])
    np.savez(root / "val_x.npz", x=x[va])
    return root


def _invoke(*args):
    from click.testing import CliRunner

    from edgeconv.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


# The first planner's 16KB pick for 8x8x1 (k7s1-32x2-gap), pinned as a recipe so that these
# tests keep their reference model when the planner's search or objective changes (issue 15)
REF_RECIPE = """name = "ref_k7s1_32x2"
input = [8, 8, 1]
[[layers]]
name = "s1_conv1"
op = "conv2d"
filters = 32
kernel = 7
activation = "relu"
[[layers]]
name = "s1_conv2"
op = "conv2d"
filters = 32
kernel = 3
activation = "relu"
[[layers]]
name = "gap"
op = "global_avg_pool"
[[layers]]
name = "fc"
op = "dense"
units = 10
[[layers]]
name = "softmax"
op = "softmax"
"""


def _build(root, name):
    recipe = root / "ref_recipe.toml"
    recipe.write_text(REF_RECIPE)
    r = _invoke("build", "--budget", "16KB", "--recipe", recipe, "--out", root / name)
    assert r.exit_code == 0, r.output
    return root / name


@pytest.fixture(scope="module")
def trained(digits):
    """A 16KB plan for 8x8x1 trained 4 epochs on 600 digits (the reference run)."""
    folder = _build(digits, "ref")
    r = _invoke("train", folder, "--data", digits / "train.npz", "--val", digits / "val.npz", "--epochs", 4, "--json")
    assert r.exit_code == 0, r.output
    import json

    return folder, json.loads(r.stdout)


def test_train_learns_digits_and_reexports(trained):
    folder, doc = trained
    acc = doc["accuracy"]
    assert doc["accuracy_on"] == "validation" and doc["samples"] == DIGITS_VAL
    assert acc["float"] >= 0.6, acc  # chance is 0.1
    for key in ("int8_tflm", "int8_ort_cpu"):
        assert acc[key] >= acc["float"] - 0.05, acc
    import json

    plan = json.loads((folder / "plan.json").read_text())
    assert plan["training"]["samples"] == DIGITS_TRAIN and len(plan["training"]["history"]) == 4
    assert plan["summary"]["weights"].startswith("trained by edgeconv train")
    assert "training inputs" in plan["summary"]["calibration"]["source"]
    # the folder loads back (manifest, quant.json and weights.npz belong together)
    from edgeconv.artifacts.folder import load_build

    assert load_build(folder).name == plan["model"]["name"]


def test_interrupted_run_resumes_to_the_same_weights(trained, digits, monkeypatch):
    """Ctrl-C at the start of epoch 3 leaves epoch 2's checkpoint; --resume finishes with the
    very weights of the uninterrupted reference run (and so shows determinism for a seed)."""
    from edgeconv.train import loop

    ref_folder, _ = trained
    folder = _build(digits, "resumed")
    before = (folder / "weights.npz").read_bytes()
    real_start = loop.Progress.start

    def interrupt(self, epoch, *args):
        if epoch == 3:
            raise KeyboardInterrupt
        real_start(self, epoch, *args)

    monkeypatch.setattr(loop.Progress, "start", interrupt)
    args = ("train", folder, "--data", digits / "train.npz", "--val", digits / "val.npz", "--epochs", 4)
    r = _invoke(*args)
    assert r.exit_code == 130 and "--resume" in r.stderr
    assert (folder / "weights.npz").read_bytes() == before  # the build folder is untouched
    ckpt = folder.parent / "resumed.train" / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    monkeypatch.setattr(loop.Progress, "start", real_start)
    r = _invoke(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert (folder / "weights.npz").read_bytes() == (ref_folder / "weights.npz").read_bytes()
    assert (folder / "model.int8.tflite").read_bytes() == (ref_folder / "model.int8.tflite").read_bytes()
    # resuming with other options is refused, naming why
    r = _invoke(*args[:-1], 5, "--resume")
    assert r.exit_code == 2 and "other training options" in r.stderr


def test_training_loop_is_deterministic(digits):
    from edgeconv.train.loop import TrainConfig, train

    with np.load(digits / "train.npz") as d:
        x, y = d["x"][:128], d["y"][:128]
    model = plan(InputSpec(8, 8, 1), 10, Budgets(16_000, 256_000)).model
    results = []
    for _ in range(2):
        module = to_module(model, seed=3)
        train(module, x, y, TrainConfig(epochs=2, batch=32, augment=("crop", "flip"), seed=5))
        results.append(weights_from_module(module))
    assert all(np.array_equal(results[0][k], results[1][k]) for k in results[0])


@pytest.mark.parametrize(
    "args, message",
    [
        (("--data", "missing.npz"), "--data missing.npz: not found"),
        (("--data", "val_x.npz"), "expected labels 'y' next to 'x'"),
        (("--data", "train.npz", "--augment", "rotate"), "--augment: expected a comma-separated list of crop, flip"),
    ],
)
def test_train_bad_inputs_are_one_line_errors(digits, args, message, monkeypatch):
    monkeypatch.chdir(digits)
    r = _invoke("train", "ref", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output


def test_qat_fake_quant_is_the_exported_quantization(trained, digits):
    """QAT installs exactly the QuantParams the export writes, and its fake-quantized layers
    sit within 1 LSB of the int8 goldens (ONNX Runtime's fp32 family: nearly everywhere 0)."""
    from edgeconv.artifacts.folder import load_build
    from edgeconv.quant.golden import run_int8
    from edgeconv.quant.quantize import quantize_input
    from edgeconv.train import qat
    from edgeconv.train.run import calibration_subset

    folder, _ = trained
    build = load_build(folder)
    with np.load(digits / "train.npz") as d:
        calib = calibration_subset(d["x"], 512, 0)
    with np.load(digits / "val.npz") as d:
        x = d["x"]
    module = to_module(build.analysis, build.weights, batchnorm=False)  # the folder's weights, exactly
    module.eval()
    qp = qat.qparams_for(module, calib)
    assert qp.activations == build.qparams.activations  # the folder was calibrated on the same inputs
    assert all(np.array_equal(qp.q_weights[k], build.qparams.q_weights[k]) for k in qp.q_weights)
    assert all(np.array_equal(qp.q_biases[k], build.qparams.q_biases[k]) for k in qp.q_biases)
    qat.install(module, qp)
    with torch.no_grad():
        values = module.run(torch.from_numpy(x), keep_all=True)
    x_q = quantize_input(x, qp.activations["input"], "int8")
    for runtime, max_share in (("ort_cpu", 0.001), ("tflm", 0.1)):
        golden = run_int8(build.analysis, qp, x_q, runtime, keep_all=True)
        for layer in build.analysis.model.layers[:-1]:  # the softmax is not fake-quantized
            tq = qp.activations[layer.name]
            got = np.rint(values[layer.name].permute(0, 2, 3, 1).numpy() / tq.scale[0]) + tq.zero_point[0]
            diff = np.abs(got - golden[layer.name].astype(np.int64).reshape(got.shape))
            assert diff.max() <= 1 and (diff > 0).mean() <= max_share, (runtime, layer.name)


@pytest.fixture(scope="module")
def parity_doc(trained, digits):
    import json

    folder, _ = trained
    md, junit = digits / "parity.md", digits / "parity.xml"
    args = ("parity", folder, "--targets", "cpu,arm,npu,mcu", "--inputs", digits / "val.npz", "--labels")
    r = _invoke(*args, "--json", "--md", md, "--junit", junit)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), md.read_text(), junit.read_text()


def test_parity_labels_reports_accuracy_per_target(parity_doc, trained):
    doc, md, junit = parity_doc
    _, train_doc = trained
    assert doc["float_accuracy"] == pytest.approx(train_doc["accuracy"]["float"])
    accs = {t["target"]: t["quality"]["vs_float"]["accuracy"] for t in doc["targets"]}
    assert set(accs) == {"cpu", "arm", "npu", "mcu"}
    # cpu is ONNX Runtime's golden, mcu TFLM's: bit-exact targets score what the goldens score
    assert accs["cpu"] == pytest.approx(train_doc["accuracy"]["int8_ort_cpu"])
    assert accs["mcu"] == pytest.approx(train_doc["accuracy"]["int8_tflm"])
    assert all(abs(a - doc["float_accuracy"]) <= 0.05 for a in accs.values()), accs
    assert "### Accuracy with labels" in md and f"| float reference | {doc['float_accuracy']:.2%} |" in md
    assert junit.count('name="accuracy') >= 4 or junit.count("accuracy") >= 4


def test_parity_labels_from_a_separate_file_and_errors(trained, digits):
    import json

    folder, _ = trained
    base = ("parity", folder, "--targets", "cpu", "--inputs")
    r = _invoke(*base, digits / "val_x.npz", "--labels", digits / "val_y.npy", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["float_accuracy"] is not None
    r = _invoke(*base, digits / "val_x.npz", "--labels")
    assert r.exit_code == 2 and "expected labels 'y' next to 'x'" in r.stderr
    r = _invoke("parity", folder, "--targets", "cpu", "--labels")
    assert r.exit_code == 2 and "--labels: expected --inputs" in r.stderr


def test_qat_epochs_keep_targets_bit_exact(digits):
    """One QAT epoch after two float ones: the re-exported int8 artifacts still match their
    goldens bit for bit on cpu, arm and mcu (parity's deployment verdict, 0 LSB allowed)."""
    import json

    folder = _build(digits, "qat")
    r = _invoke(
        "train",
        folder,
        "--data",
        digits / "train.npz",
        "--val",
        digits / "val.npz",
        "--epochs",
        2,
        "--qat",
        1,
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["qat_epochs"] == 1 and doc["accuracy"]["float"] >= 0.5
    r = _invoke("parity", folder, "--targets", "cpu,arm,mcu", "--inputs", digits / "val.npz", "--labels", "--json")
    assert r.exit_code == 0, r.output
    for t in json.loads(r.stdout)["targets"]:
        assert t["deployment"]["passed"] and t["vs_golden"]["max_lsb"] == 0, t["target"]


def test_image_folder_data(tmp_path):
    """A folder of class sub-folders: sorted names are the classes, images converted to the
    model's channels, resized to its W x H and scaled to [0, 1]."""
    from PIL import Image

    from edgeconv.train.data import load_labelled

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    analysis = analyze(plan(InputSpec(8, 8, 1), 10, Budgets(16_000, 256_000)).model)
    data = load_labelled(tmp_path, analysis)
    assert data.x.shape == (6, 8, 8, 1) and data.x.dtype == np.float32
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1] and data.classes == ("cat", "dog")
