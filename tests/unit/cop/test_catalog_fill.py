"""A model with no measured function rows gets rows predicted from operator profiles (COP) by the
profiler step (controller/profiler/predicted_rows.py, `hybridserve profile --predict-only`),
written to function_latency_predicted.csv; the catalog reads them, checks them like measured rows
and says where they came from. It predicts nothing by itself."""
import csv
import os
import shutil

import numpy as np
import pytest

from controller.catalog import PREDICTED_FUNCTION_FILE, Catalog, CatalogError
from controller.profiler.predicted_rows import write_predicted_function_rows
from controller.profiler.cop.predictor import SOURCE

LOCAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "catalog", "local")


def _read(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _without_function_rows(src: str, dst: str, model: str) -> list[dict]:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("profile_cells.csv"))
    path = os.path.join(dst, "function_latency.csv")
    rows = _read(path)
    _write(path, [r for r in rows if r["model"] != model])
    return [r for r in rows if r["model"] == model]


def test_measured_models_say_measured_and_nothing_is_predicted(tmp_path):
    cat = Catalog(os.path.abspath(LOCAL))
    assert set(cat.function_source.values()) == {"measured"}
    d = str(tmp_path / "cat")
    shutil.copytree(os.path.abspath(LOCAL), d, ignore=shutil.ignore_patterns("profile_cells.csv"))
    assert write_predicted_function_rows(d) == 0
    assert not os.path.exists(os.path.join(d, PREDICTED_FUNCTION_FILE))


def test_the_catalog_alone_predicts_nothing(tmp_path):
    _without_function_rows(os.path.abspath(LOCAL), str(tmp_path / "cat"), "resnet18")
    cat = Catalog(str(tmp_path / "cat"))
    assert cat.function_profile("resnet18") is None and "resnet18" not in cat.function_source


def test_missing_model_is_predicted_and_close_to_its_measurement(tmp_path):
    d = str(tmp_path / "cat")
    dropped = _without_function_rows(os.path.abspath(LOCAL), d, "resnet18")
    assert dropped
    n = write_predicted_function_rows(d)
    rows = _read(os.path.join(d, PREDICTED_FUNCTION_FILE))
    assert n == len(rows) > 0
    assert {r["model"] for r in rows} == {"resnet18"} and {r["source"] for r in rows} == {SOURCE}
    cat = Catalog(d)
    assert cat.function_source["resnet18"] == SOURCE
    prof = cat.function_profile("resnet18")
    # the catalog loads exactly the rows written (unrounded)
    b1 = sorted((int(r["memory_mb"]), float(r["latency_ms"])) for r in rows if r["batch_size"] == "1")
    assert list(prof.memory_mb) == [m for m, _ in b1] and list(prof.latency_b1_ms) == [ms for _, ms in b1]
    errors = [abs(prof.latency_ms(int(r["memory_mb"]), int(r["batch_size"])) / float(r["latency_ms"]) - 1)
              for r in dropped if int(r["batch_size"]) in prof.by_batch]
    assert errors
    # Predicted from the other models' operators and calibrated on their measurements.
    assert float(np.median(errors)) < 0.35
    assert all(np.isfinite(prof.latency_ms(m)) for m in prof.memory_mb)


def test_measured_rows_win_over_predicted_ones(tmp_path):
    d = str(tmp_path / "cat")
    shutil.copytree(os.path.abspath(LOCAL), d, ignore=shutil.ignore_patterns("profile_cells.csv"))
    measured = Catalog(d).function_profile("resnet18")
    _write(os.path.join(d, PREDICTED_FUNCTION_FILE),
           [{"model": "resnet18", "memory_mb": 1769, "batch_size": 1, "latency_ms": 999.0, "source": SOURCE}])
    cat = Catalog(d)
    assert cat.function_source["resnet18"] == "measured"
    assert list(cat.function_profile("resnet18").latency_b1_ms) == list(measured.latency_b1_ms)


def test_a_predicted_row_over_the_ceiling_is_refused_naming_its_file(tmp_path):
    d = str(tmp_path / "cat")
    _without_function_rows(os.path.abspath(LOCAL), d, "resnet18")
    _write(os.path.join(d, PREDICTED_FUNCTION_FILE),
           [{"model": "resnet18", "memory_mb": 1769, "batch_size": 1, "latency_ms": 0.01, "source": SOURCE}])
    with pytest.raises(CatalogError, match=f"{PREDICTED_FUNCTION_FILE} row 2"):
        Catalog(d)


def test_profile_predict_only_writes_the_rows_and_measures_nothing(tmp_path, capsys):
    from controller.cli import main

    d = str(tmp_path / "cat")
    _without_function_rows(os.path.abspath(LOCAL), d, "resnet18")
    assert main(["profile", "--predict-only", "--out", d]) == 0
    assert "function rows predicted" in capsys.readouterr().out
    assert Catalog(d).function_source["resnet18"] == SOURCE
    assert not os.path.exists(os.path.join(d, "profile_cells.csv"))
    assert main(["profile", "--predict-only", "--out", str(tmp_path / "none")]) == 2
