#!/usr/bin/env python3
"""Runs an ONNX model in onnxruntime, for tests/onnx/export_test.cpp.

    run_onnxruntime.py MODEL INPUTS OUTPUTS

INPUTS is a safetensors file whose tensors are named after the model's inputs; the model's
outputs are written to OUTPUTS, a safetensors file, under their ONNX names. Exits with 3 (and a
line on stderr saying why) when onnxruntime or numpy cannot be imported, so that the test can
skip rather than fail.
"""

import json
import struct
import sys

try:
    import numpy as np
    import onnxruntime
except ImportError as error:
    print(f"onnxruntime is not available: {error}", file=sys.stderr)
    sys.exit(3)

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "BOOL": np.bool_,
          "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_length])
    body = data[8 + header_length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(entry["shape"])
    return tensors


def write_safetensors(path, tensors):
    names = {np.dtype(v): k for k, v in DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name, value in tensors.items():
        raw = np.ascontiguousarray(value).tobytes()
        header[name] = {"dtype": names[value.dtype], "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def main():
    model, inputs, outputs = sys.argv[1:4]
    options = onnxruntime.SessionOptions()
    # The graph as exported, op by op: onnxruntime's own fusions would change the rounding.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feeds = read_safetensors(inputs)
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    write_safetensors(outputs, dict(zip(names, results)))


if __name__ == "__main__":
    main()
