"""The analyzer behind `hybridserve tune`: costs and recommendations from latency profiles (pure,
analyzer.py), its Markdown/PNG report (report.py) and config patch and admin client (patch.py).

    result = tune_app(catalog, cfg, "image-classify", strategy="balanced", weight=0.5)
    write_report(result, "docs/tuning-report", source="configs/catalog/local")
"""
from controller.tuning.analyzer import (STRATEGIES, FunctionPoint, InstanceChoice, ModelTuning, Recommendation,
                                        TuneResult, choose, recommend_instances, tune_app)

__all__ = ["STRATEGIES", "FunctionPoint", "InstanceChoice", "ModelTuning", "Recommendation", "TuneResult",
           "choose", "recommend_instances", "tune_app"]
