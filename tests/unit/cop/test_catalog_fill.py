"""The catalog predicts function latencies from operator profiles (COP) for a model that has no
measured rows, scaled to the catalog's platform, and says so."""
import csv
import os
import shutil

import numpy as np

from controller.catalog import Catalog
from serving.cop.predictor import SOURCE

LOCAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "catalog", "local")


def _without_function_rows(src: str, dst: str, model: str) -> list[dict]:
    shutil.copytree(src, dst)
    path = os.path.join(dst, "function_latency.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept, dropped = [r for r in rows if r["model"] != model], [r for r in rows if r["model"] == model]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(kept)
    return dropped


def test_measured_models_say_measured():
    cat = Catalog(os.path.abspath(LOCAL))
    assert set(cat.function_source.values()) == {"measured"}


def test_missing_model_is_predicted_and_close_to_its_measurement(tmp_path):
    dropped = _without_function_rows(os.path.abspath(LOCAL), str(tmp_path / "cat"), "resnet18")
    assert dropped
    cat = Catalog(str(tmp_path / "cat"))
    assert cat.function_source["resnet18"] == SOURCE
    prof = cat.function_profile("resnet18")
    errors = [abs(prof.latency_ms(int(r["memory_mb"]), int(r["batch_size"])) / float(r["latency_ms"]) - 1)
              for r in dropped if int(r["batch_size"]) in prof.by_batch]
    assert errors
    # Predicted from the other models' operators and calibrated on their measurements.
    assert float(np.median(errors)) < 0.35
    assert all(np.isfinite(prof.latency_ms(m)) for m in prof.memory_mb)
