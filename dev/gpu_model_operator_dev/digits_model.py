"""The example model: a small neural network on scikit-learn's bundled handwritten digits.

Trained in seconds, saved as plain weight arrays (digits.npz) that the example score.py reads with numpy,
so the serving environment needs neither scikit-learn nor a pickle of a particular version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TrainedModel:
    model_dir: Path
    test_images: np.ndarray  # shape (n, 64), pixel values 0..16
    test_labels: np.ndarray
    accuracy: float


def train(model_dir: Path, seed: int = 0) -> TrainedModel:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    net = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=400, random_state=seed)
    net.fit(x_train, y_train)
    model_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"coef_{i}": w for i, w in enumerate(net.coefs_)}
    arrays.update({f"intercept_{i}": b for i, b in enumerate(net.intercepts_)})
    np.savez(model_dir / "digits.npz", classes=net.classes_, **arrays)
    return TrainedModel(model_dir, x_test, y_test, float(net.score(x_test, y_test)))
