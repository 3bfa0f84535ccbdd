import pytest

from edgeconv.core import shapes
from edgeconv.core.errors import ShapeError
from edgeconv.plan.calculator import explain_layer


def test_lecture_worked_example():
    r = explain_layer((32, 32, 3), "conv2d", filters=10, kernel=(5, 5), stride=(1, 1), padding=2)
    assert r["output"] == [32, 32, 10]
    assert r["params_per_filter"] == 76
    assert r["params"] == 760
    assert r["macs"] == 32 * 32 * 10 * 5 * 5 * 3


def test_one_by_one_conv_is_a_dot_product_over_depth():
    r = explain_layer((56, 56, 64), "conv2d", filters=32, kernel=(1, 1), stride=(1, 1), padding=0)
    assert r["output"] == [56, 56, 32]
    assert r["params"] == 64 * 32 + 32


@pytest.mark.parametrize("size,k,s,p,out", [(32, 3, 1, 1, 32), (7, 3, 2, 0, 3), (5, 5, 1, 0, 1), (227, 11, 4, 0, 55)])
def test_explicit_padding_formula(size, k, s, p, out):
    g = shapes.axis_geometry(size, k, s, p)
    assert (g.out, g.pad_begin, g.pad_end) == (out, p, p)


def test_same_padding_puts_the_odd_pixel_at_the_end():
    # MLPerf Tiny ResNet-8: 32x32 to 16x16 with a 3x3 stride-2 conv
    g = shapes.axis_geometry(32, 3, 2, "same")
    assert (g.out, g.pad_begin, g.pad_end) == (16, 0, 1)
    g = shapes.axis_geometry(5, 4, 1, "same")
    assert (g.out, g.pad_begin, g.pad_end) == (5, 1, 2)


def test_valid_padding_floors():
    assert shapes.axis_geometry(32, 3, 2, "valid").out == 15
    assert shapes.axis_geometry(4, 2, 2, "valid").out == 2


def test_non_tiling_padding_is_refused_with_the_arithmetic_and_fixes():
    with pytest.raises(ShapeError) as err:
        shapes.axis_geometry(32, 3, 2, 0, layer="conv3")
    message = str(err.value)
    assert "conv3" in message and "(32 − 3 + 2·0)/2 + 1 = 15.5" in message
    assert "strides that fit with P=0: 1" in message
    assert "padding 'same'" in message


def test_refusal_lists_paddings_that_fit():
    with pytest.raises(ShapeError) as err:
        shapes.axis_geometry(10, 3, 3, 0)
    assert "paddings that fit with S=3: 1 (W2=4)" in str(err.value)


@pytest.mark.parametrize("kernel,stride", [(0, 1), (3, 0)])
def test_zero_kernel_or_stride_is_refused(kernel, stride):
    with pytest.raises(ShapeError):
        shapes.axis_geometry(8, kernel, stride, "same")


def test_kernel_larger_than_input_is_refused():
    with pytest.raises(ShapeError, match="larger than the padded input"):
        shapes.axis_geometry(4, 7, 1, 1)
    with pytest.raises(ShapeError, match="larger than the input"):
        shapes.axis_geometry(4, 7, 1, "valid")


def test_non_square_depthwise_and_pool():
    r = explain_layer((49, 10, 64), "depthwise_conv2d", kernel=(3, 3), stride=(1, 1), padding="same")
    assert r["output"] == [49, 10, 64] and r["params"] == 9 * 64 + 64
    r = explain_layer((25, 5, 64), "avg_pool", kernel=(25, 5), stride=(25, 5), padding="valid")
    assert r["output"] == [1, 1, 64] and r["params"] == 0
