"""A new user's own digit classifier, as they would make it outside Waft: a small convolutional net trained
on scikit-learn's bundled `load_digits` (8x8 digits, no download) drawn as MNIST draws digits (white on
black, the digit in the middle 20x20 of 28x28), converted to a full-integer uint8 TF Lite model (input
`[1,28,28,1]` u8 raw pixels, output `[1,10]` u8 softmax), the shape of the original system's MNIST models.

`python user_digit_model.py OUT` writes OUT/model.tflite and one held-out test digit per class as
OUT/held_out/<digit>.png (never seen in training). Run as its own process by tests/e2e/test_own_models.py,
so TensorFlow never loads into the test process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIDE, BOX = 28, 20


def render(digit: np.ndarray) -> Image.Image:
    """An 8x8 `load_digits` image (0..16) as a 28x28 grey MNIST-style picture."""
    small = Image.fromarray(np.round(digit * (255 / 16)).astype(np.uint8), "L")
    canvas = Image.new("L", (SIDE, SIDE))
    canvas.paste(small.resize((BOX, BOX), Image.Resampling.BILINEAR), ((SIDE - BOX) // 2, (SIDE - BOX) // 2))
    return canvas


def build(out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train, test, y_train, y_test = train_test_split(digits.images, digits.target, test_size=0.25, random_state=0,
                                                    stratify=digits.target)
    x = np.stack([np.asarray(render(d)) for d in train])[..., None].astype(np.float32)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((SIDE, SIDE, 1)), tf.keras.layers.Rescaling(1 / 255),
                                 tf.keras.layers.Conv2D(16, 3, activation="relu"), tf.keras.layers.MaxPooling2D(2),
                                 tf.keras.layers.Conv2D(32, 3, activation="relu"), tf.keras.layers.MaxPooling2D(2),
                                 tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y_train, epochs=15, batch_size=32, verbose=0)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(0, len(x), 8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(converter.convert())

    held_out = out / "held_out"
    held_out.mkdir(exist_ok=True)
    for digit in range(10):
        first = int(np.flatnonzero(y_test == digit)[0])
        render(test[first]).save(held_out / f"{digit}.png")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
