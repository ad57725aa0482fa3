#!/usr/bin/env python3
"""External validation of an ONNX file (manual, not run in CI).

Usage: check-onnx.py FILE.onnx [IO.safetensors]

Runs onnx.checker.check_model(model, full_check=True) (the structural checks plus strict shape
inference, which compares every declared value_info with the inferred shapes). With a
safetensors file holding `input` and `logits` (float32, as `cryptgpu`'s export test and the
fixtures of shared/data/onnx write them), also runs the model on `input` with
onnx.reference.ReferenceEvaluator (with BatchNormalization in inference mode, see below) and
prints the largest absolute difference from `logits`.

Needs only `onnx` and `numpy`:
    python3 -m venv /tmp/onnxvenv && /tmp/onnxvenv/bin/pip install onnx numpy
    /tmp/onnxvenv/bin/python scripts/check-onnx.py model.onnx model.io.safetensors
The safetensors file is parsed by hand (8-byte little-endian header length, JSON header, raw
data), so no safetensors package is needed. Where `onnxruntime` is installed, the model also
runs there and that difference is printed too. Exits non-zero when a check fails.
"""
import json
import struct
import sys

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}


class BatchNormalization(OpRun):
    """Inference batch normalisation with the running statistics. The reference evaluator's own
    BatchNormalization for opsets 9 to 13 mixes in the batch's statistics whenever `momentum` is
    set, and it sets it to its default 0.9 when the attribute is absent: its logits then differ
    from PyTorch's eval mode (by about 6e-3 on the bn_cnn fixture)."""

    op_domain = ""

    def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, training_mode=None):
        shape = (-1,) + (1,) * (x.ndim - 2)
        eps = 1e-5 if epsilon is None else epsilon
        y = scale.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) + bias.reshape(shape)
        return (y.astype(x.dtype),)


def read_safetensors(path):
    """The tensors of a safetensors file by name, as numpy arrays."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(info["dtype"])
        if dtype is None:
            sys.exit(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        lo, hi = info["data_offsets"]
        out[name] = np.frombuffer(body[lo:hi], dtype=np.dtype(dtype).newbyteorder("<")).reshape(info["shape"])
    return out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    model = onnx.load(sys.argv[1])
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    print(f"{sys.argv[1]}: check_model(full_check=True) passed (ir_version {model.ir_version}, opsets {opsets})")
    if len(sys.argv) == 3:
        io = read_safetensors(sys.argv[2])
        x, want = io["input"], io["logits"]
        name = model.graph.input[0].name
        (got,) = ReferenceEvaluator(model, new_ops=[BatchNormalization]).run(None, {name: x.astype(np.float32)})
        if got.shape != want.shape:
            sys.exit(f"output shape {got.shape}, the logits are {want.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        scale = float(np.max(np.abs(want)))
        print(f"  ReferenceEvaluator on input {list(x.shape)}: max |diff| = {diff:.3g} (max |logit| {scale:.3g})")
        try:
            import onnxruntime
        except ImportError:
            return
        session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {name: x.astype(np.float32)})
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        print(f"  onnxruntime {onnxruntime.__version__}: max |diff| = {diff:.3g}")


if __name__ == "__main__":
    main()
