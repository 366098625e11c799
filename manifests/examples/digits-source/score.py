"""Entry script for the handwritten-digits model: the Azure ML contract, init() once, run() per request.

The model is a small multi-layer perceptron trained with scikit-learn and saved as plain weight arrays
(digits.npz), so serving needs only numpy. The same file works on AKS and on the local backend.
"""

import json
import os

import numpy as np

weights = None


def init():
    global weights
    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "digits.npz")
    weights = dict(np.load(path))


def run(raw_data):
    data = np.asarray(json.loads(raw_data)["data"], dtype=np.float64)
    layers = sum(1 for key in weights if key.startswith("coef_"))
    activation = data
    for i in range(layers):
        activation = activation @ weights[f"coef_{i}"] + weights[f"intercept_{i}"]
        if i < layers - 1:
            activation = np.maximum(activation, 0.0)  # relu, as trained
    predictions = weights["classes"][np.argmax(activation, axis=1)]
    return predictions.tolist()
