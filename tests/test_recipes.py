import pytest

from edgeconv.core.errors import InputError, ShapeError
from edgeconv.core.graph import analyze
from edgeconv.core.ir import Conv2d, InputSpec, chain
from edgeconv.plan.memory import peak_activation_ram
from edgeconv.plan.recipes import load_recipe, model_from_dict, model_to_dict, recipe_names


def test_resnet8_matches_mlperf_tiny():
    a = analyze(load_recipe("resnet8"))
    assert a.params == 77_706
    assert a.macs == 12_501_632
    assert a.info("s2_conv1").out_shape == (16, 16, 32)  # 3x3 stride-2 'same': 32 -> 16
    assert a.output_shape == (1, 1, 10)


def test_ds_cnn_shapes():
    a = analyze(load_recipe("ds_cnn"))
    assert a.info("conv1").out_shape == (25, 5, 64)
    assert a.info("pool").out_shape == (1, 1, 64)
    assert a.params == 2_624 + 4 * (640 + 4_160) + 780
    assert a.output_shape == (1, 1, 12)


def test_mobilenet_v1_025_matches_mlperf_tiny_vww():
    # the MLPerf Tiny VWW reference (vww_model.py, alpha 0.25): BatchNorm folded, 7.49 M MACs
    a = analyze(load_recipe("mobilenet_v1_025"))
    assert a.params == 210_850
    assert a.macs == 7_489_664
    assert a.info("conv1").out_shape == (48, 48, 8)  # 3x3 stride-2 'same': 96 -> 48
    assert a.info("pw6").out_shape == (6, 6, 128)
    assert a.info("pw13").out_shape == (3, 3, 256)
    assert sum(layer.op == "depthwise_conv2d" for layer in a.model.layers) == 13
    assert a.output_shape == (1, 1, 2)


def test_vgg_small_shapes():
    a = analyze(load_recipe("vgg_small"))
    assert a.info("pool3").out_shape == (4, 4, 64)
    assert a.info("fc").params == 4 * 4 * 64 * 10 + 10


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_round_trips_through_its_dict_form(name):
    model = load_recipe(name)
    assert model_from_dict(model_to_dict(model), "again") == model


def test_peak_ram_keeps_the_residual_branch_alive():
    a = analyze(load_recipe("resnet8"))
    peak, layer = peak_activation_ram(a)
    # during s1_conv2: conv1's output (kept for s1_add), s1_conv1's output and s1_conv2's output
    assert (peak, layer) == (3 * 32 * 32 * 16, "s1_conv2")


def _recipe(**overrides):
    layer = {"name": "c1", "op": "conv2d", "filters": 8, "kernel": 3}
    layer.update(overrides)
    return {"name": "m", "input": [8, 8, 1], "layers": [layer]}


@pytest.mark.parametrize(
    "override,field",
    [
        ({"filters": 0}, "filters"),
        ({"kernel": [3]}, "kernel"),
        ({"kernel": 0}, "kernel"),
        ({"stride": 0}, "stride"),
        ({"padding": "full"}, "padding"),
        ({"activation": "gelu"}, "activation"),
        ({"op": "conv3d"}, "op"),
        ({"dilation": 2}, "dilation"),
        ({"inputs": 3}, "inputs"),
    ],
)
def test_bad_field_names_file_layer_and_field(override, field):
    with pytest.raises(InputError) as err:
        model_from_dict(_recipe(**override), "models/m.toml")
    message = str(err.value)
    assert "models/m.toml" in message and "'c1'" in message and f"'{field}'" in message


def test_missing_required_field():
    data = _recipe()
    del data["layers"][0]["filters"]
    with pytest.raises(InputError, match="field 'filters': required"):
        model_from_dict(data, "x.toml")


def test_unknown_input_reference():
    data = _recipe(inputs="nowhere")
    with pytest.raises(InputError, match="'nowhere', which is not an earlier layer"):
        model_from_dict(data, "x.toml")


def test_missing_and_malformed_recipe_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_recipe(str(tmp_path / "nope.toml"))
    with pytest.raises(InputError, match=r"expected a \.toml path or one of"):
        load_recipe("no_such_recipe")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_recipe(str(bad))


def test_add_of_different_shapes_is_refused():
    model = chain("m", InputSpec(8, 8, 3), [Conv2d("a", 4, (3, 3)), Conv2d("b", 8, (3, 3))])
    from edgeconv.core.ir import Add

    model = chain(
        "m", InputSpec(8, 8, 3), [Conv2d("a", 4, (3, 3)), Conv2d("b", 8, (3, 3)), Add("j", inputs=("a", "b"))]
    )
    with pytest.raises(ShapeError, match="add needs equal shapes, got a 8x8x4 and b 8x8x8"):
        analyze(model)
