"""COP (INFless's combined operator profiling): predict a model's latency at a batch size and
CPU share from per-operator profiles measured on this machine.

    from controller.profiler.cop import predict_latency_ms, function_latency_rows
    predict_latency_ms("resnet50", 4, 1.0)                     # ms
    function_latency_rows("vgg16", [1024, 2048], [1, 4])       # catalog rows, "predicted (COP)"

graph.py: operator graphs (and their chain / branch arithmetic); profile.py: measuring
(mxnet, a CPU quota per share); sweep.py: synthetic operator shapes to profile; features.py and
fit.py: the per-class latency model of operator shapes and the model-level terms;
predictor.py: the prediction from the stored profile.
"""
from controller.profiler.cop.predictor import SOURCE, function_latency_rows, predict_latency_ms

__all__ = ["predict_latency_ms", "function_latency_rows", "SOURCE"]
