"""An image classifier under LoadGen, in the style of MLPerf's vision
reference (vision/classification_and_detection/python/main.py): a QSL that
preloads images, a SUT that batches them through ONNX Runtime on a worker
thread and answers each sample with its class as int32 bytes. Written only
against MLCommons' mlperf_loadgen API, so it runs unchanged on theirs and on
joulebench's.

The model (a small seeded CNN) and the data set (seeded random images) are
generated here: nothing is downloaded.

  python vision_onnx.py --outdir OUT [--scenario Offline|SingleStream] [--mode ...]
"""
import argparse
import array
import os
import queue
import threading

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import mlperf_loadgen as lg


def make_model(path, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(0, 0.2, (8, classes)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--outdir", required=True)
    p.add_argument("--scenario", default="Offline")
    p.add_argument("--mode", default="PerformanceOnly")
    p.add_argument("--count", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--min-duration-ms", type=int, default=500)
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    model_path = os.path.join(a.outdir, "tiny_classifier.onnx")
    make_model(model_path)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    images = np.random.default_rng(1).random((a.count, 3, 32, 32), dtype=np.float32)
    loaded = {}

    def load(indices):
        for i in indices:
            loaded[i] = images[i]

    def unload(indices):
        for i in indices:
            loaded.pop(i, None)

    work = queue.Queue()

    def worker():
        while True:
            samples = work.get()
            if samples is None:
                return
            for start in range(0, len(samples), a.batch):
                batch = samples[start:start + a.batch]
                x = np.stack([loaded[s.index] for s in batch])
                classes = session.run(None, {"image": x})[0].argmax(axis=1).astype(np.int32)
                responses, keep = [], []
                for s, c in zip(batch, classes):
                    data = array.array("B", np.array([c], np.int32).tobytes())
                    keep.append(data)
                    addr, size = data.buffer_info()
                    responses.append(lg.QuerySampleResponse(s.id, addr, size))
                lg.QuerySamplesComplete(responses)

    thread = threading.Thread(target=worker)
    thread.start()
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, a.scenario)
    settings.mode = getattr(lg.TestMode, a.mode)
    settings.min_duration_ms = a.min_duration_ms
    settings.min_query_count = 64
    settings.offline_expected_qps = 200_000  # above what it does: Offline must not run short
    settings.single_stream_expected_latency_ns = 10_000  # below what it takes, likewise
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = a.outdir
    log_settings.log_output.copy_summary_to_stdout = True
    log_settings.enable_trace = False
    sut = lg.ConstructSUT(lambda samples: work.put(list(samples)), lambda: None)
    qsl = lg.ConstructQSL(a.count, min(a.count, 128), load, unload)
    lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    work.put(None)
    thread.join()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


if __name__ == "__main__":
    main()
