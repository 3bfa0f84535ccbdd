"""Generate the TFLite import fixtures in tests/data/import/ with the TensorFlow Lite converter.

Run once, in a venv with TensorFlow (the tests never import it), for example the one of
scripts/make_import_fixtures.py:

    /work/venvs/fixtures/bin/python scripts/make_tflite_fixtures.py

Every fixture NAME is a small seeded Keras model converted twice: NAME.tflite (float32) and
NAME_int8.tflite (full integer: int8 input and output, per-channel weights, calibrated on 32
seeded inputs), with NAME_tflite.npz holding `inputs` (S x H x W x C float32, NHWC; S x N for a vector input) and
`outputs` (Keras' outputs on them). BatchNorm statistics are randomized so the converter really
folds them. The list and the operators each file holds go to tflite_fixtures.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

SEED = 20261203
SAMPLES = 4
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "import"


def models(keras):
    L = keras.layers

    count = [0]

    def bn(x):
        layer = L.BatchNormalization()
        y = layer(x)
        count[0] += 1
        rng = np.random.default_rng([SEED, count[0]])
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights(
            [
                rng.uniform(0.5, 1.5, gamma.shape),
                rng.uniform(-0.2, 0.2, beta.shape),
                rng.uniform(-0.3, 0.3, mean.shape),
                rng.uniform(0.5, 2.0, var.shape),
            ]
        )
        return y

    out = {}
    # conv-BN-ReLU with explicit zero padding (PAD), depthwise ReLU6, max pool, residual ADD,
    # global average pool (MEAN), Dense + softmax; a non-square 20x16 input
    x_in = keras.Input((16, 20, 3), batch_size=1)
    x = L.ZeroPadding2D(((1, 1), (1, 1)))(x_in)
    x = L.Conv2D(8, 3, strides=2, padding="valid")(x)
    x = L.ReLU()(bn(x))
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.ReLU(max_value=6.0)(bn(y))
    y = L.Conv2D(8, 1)(y)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10, activation="softmax")(x)
    out["keras_cnn"] = (
        keras.Model(x_in, x),
        "PAD, CONV_2D, DEPTHWISE_CONV_2D (ReLU6), ADD, MAX_POOL_2D, MEAN, FC, SOFTMAX",
    )
    # average pool, flatten of a non-square map (H, W, C order) into a Dense without softmax
    x_in = keras.Input((10, 12, 3), batch_size=1)
    x = L.Conv2D(6, 3, padding="same", activation="relu")(x_in)
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(5)(x)
    out["keras_flatten"] = (keras.Model(x_in, x), "CONV_2D, AVERAGE_POOL_2D, RESHAPE, FC (no softmax)")
    # two branches joined on channels
    x_in = keras.Input((12, 12, 4), batch_size=1)
    a = L.Conv2D(4, 1, activation="relu")(x_in)
    b = L.Conv2D(4, 3, padding="same", activation="relu")(x_in)
    x = L.Concatenate()([a, b])
    x = L.Conv2D(8, 3, strides=2, padding="same")(x)
    out["keras_concat"] = (keras.Model(x_in, x), "CONV_2D, CONCATENATION")
    # a vector input [1, 640] into FULLY_CONNECTED layers and no softmax: the shape of the MLPerf
    # Tiny anomaly-detection autoencoder, small
    x_in = keras.Input((640,), batch_size=1)
    x = L.Dense(32, activation="relu")(x_in)
    x = L.Dense(8, activation="relu")(x)
    x = L.Dense(32, activation="relu")(x)
    x = L.Dense(640)(x)
    out["keras_autoencoder"] = (keras.Model(x_in, x), "FULLY_CONNECTED x4 on a [1, 640] vector, no softmax")
    return out


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    listing = {}
    for name, (model, ops) in models(keras).items():
        shape = tuple(model.input.shape[1:])
        rng = np.random.default_rng([SEED, len(name)])
        x = rng.standard_normal((SAMPLES, *shape)).astype(np.float32)
        y = np.concatenate([model(x[i : i + 1], training=False).numpy() for i in range(SAMPLES)])
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        (OUT / f"{name}.tflite").write_bytes(conv.convert())
        calib = rng.standard_normal((32, *shape)).astype(np.float32)
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda c=calib: ([c[i : i + 1]] for i in range(len(c)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        (OUT / f"{name}_int8.tflite").write_bytes(conv.convert())
        np.savez(OUT / f"{name}_tflite.npz", inputs=x, outputs=y)
        listing[name] = {
            "files": [f"{name}.tflite", f"{name}_int8.tflite"],
            "source": f"tensorflow {tf.__version__} TFLiteConverter (float, full-integer int8)",
            "layout": "NHWC",
            "ops": ops,
        }
        print(f"wrote {name}: {shape}", file=sys.stderr)
    (OUT / "tflite_fixtures.json").write_text(json.dumps(listing, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
