"""The digits app: small mxnet models of several sizes with *measured* accuracy.

ImageNet variants here have no real weights (nothing can be downloaded), so their accuracy is
the catalog's declared figure. The digits variants make accuracy feedback real end to end: at
first use each is trained on scikit-learn's bundled 8×8 digits data (1797 images, no download)
with a fixed seed, scored on a held-out stratified split, and its parameters and test accuracy
are cached under `<cache>/digits/`. Sizes, cheapest first:

  digits-small   linear classifier on a 4×4 average-pooled image (16 inputs; deliberately coarse)
  digits-medium  MLP 64-32-10 on the full 8×8 image
  digits-large   CNN: two 3×3 conv layers (16, 32 channels), max-pool, dense 64, dense 10

Inputs are float32 N×1×8×8 in [0, 1] (sklearn's 0..16 intensities / 16; ink is bright), the
same range `serving.images.decode` produces for a 1-channel model.
"""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np

from serving.runtimes.cache import atomic_path, cache_dir

VARIANTS = ("digits-small", "digits-medium", "digits-large")
LABELS = tuple(str(d) for d in range(10))
SEED = 0
TEST_FRACTION = 0.25
# Bump when an architecture or the training recipe changes, so stale caches are not reused.
_RECIPE_VERSION = 1
# (epochs, learning rate) per variant: enough for each to converge in a few seconds on 1 core.
_TRAINING = {"digits-small": (40, 0.05), "digits-medium": (60, 0.01), "digits-large": (25, 0.005)}
_TRAIN_LOCK = threading.Lock()


def _check(variant: str) -> None:
    if variant not in VARIANTS:
        raise KeyError(f"unknown digits variant {variant!r}; known: {', '.join(VARIANTS)}")


def build_block(variant: str):
    """The uninitialised gluon HybridBlock of a digits variant (input N×1×8×8)."""
    from mxnet.gluon import nn

    _check(variant)
    net = nn.HybridSequential(prefix=f"{variant.replace('-', '_')}_")
    with net.name_scope():
        if variant == "digits-small":
            net.add(nn.AvgPool2D(pool_size=2), nn.Flatten(), nn.Dense(10))
        elif variant == "digits-medium":
            net.add(nn.Flatten(), nn.Dense(32, activation="relu"), nn.Dense(10))
        else:
            net.add(nn.Conv2D(16, kernel_size=3, padding=1, activation="relu"),
                    nn.Conv2D(32, kernel_size=3, padding=1, activation="relu"),
                    nn.MaxPool2D(pool_size=2), nn.Flatten(),
                    nn.Dense(64, activation="relu"), nn.Dense(10))
    return net


def _dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels); fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y)
    return x_tr, y_tr, x_te, y_te


def test_samples() -> tuple[np.ndarray, np.ndarray]:
    """Held-out labelled samples: (images float32 N×1×8×8 in [0, 1], labels int64 N).

    None of them was used in training: the load generator sends them and reports their true
    labels as accuracy feedback.
    """
    _, _, x_te, y_te = _dataset()
    return x_te, y_te


def _paths(variant: str) -> tuple[str, str]:
    base = os.path.join(cache_dir("digits"), f"{variant}-r{_RECIPE_VERSION}-s{SEED}")
    return base + ".params", base + ".json"


def _train(variant: str) -> tuple[object, float, float]:
    """Train one variant; return (net, test accuracy, training seconds)."""
    import mxnet as mx
    from mxnet import autograd, gluon

    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = _dataset()
    epochs, lr = _TRAINING[variant]
    mx.random.seed(SEED)
    rng = np.random.default_rng(SEED)
    net = build_block(variant)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": lr})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    batch_size = 64
    for _ in range(epochs):
        order = rng.permutation(len(x_tr))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = mx.nd.array(x_tr[idx]), mx.nd.array(y_tr[idx])
            with autograd.record():
                loss = loss_fn(net(xb), yb)
            loss.backward()
            trainer.step(len(idx))
    predicted = net(mx.nd.array(x_te)).asnumpy().argmax(axis=1)
    accuracy = float((predicted == y_te).mean())
    return net, accuracy, time.perf_counter() - t0


def ensure_trained(variant: str) -> str:
    """Path of the variant's trained `.params` file, training and caching it on first use."""
    _check(variant)
    params_path, meta_path = _paths(variant)
    with _TRAIN_LOCK:
        if os.path.isfile(params_path) and os.path.isfile(meta_path):
            return params_path
        net, accuracy, train_s = _train(variant)
        with atomic_path(params_path) as tmp:
            net.save_parameters(tmp)
        _, _, _, y_te = _dataset()
        meta = {"variant": variant, "test_accuracy": accuracy, "num_test": int(len(y_te)),
                "seed": SEED, "recipe_version": _RECIPE_VERSION, "train_s": round(train_s, 3)}
        # The metadata is written last: its presence says the params file is complete.
        with atomic_path(meta_path) as tmp:
            with open(tmp, "w") as fh:
                json.dump(meta, fh, indent=1)
    return params_path


def training_record(variant: str) -> dict:
    """The cached training metadata: test_accuracy, num_test, seed, train_s, ..."""
    ensure_trained(variant)
    with open(_paths(variant)[1]) as fh:
        return json.load(fh)


def measured_accuracy(variant: str) -> float:
    """Top-1 accuracy of the variant on the held-out split (trains on first use)."""
    return float(training_record(variant)["test_accuracy"])
