"""Float32 safetensors files, read and written without the safetensors package.

The format (huggingface/safetensors, and model/weights.go): an 8-byte
little-endian header length, a JSON header mapping each tensor's name to
{"dtype", "shape", "data_offsets": [begin, end)} (offsets into the data
that follows the header) and an optional "__metadata__" map of strings,
then the raw data. Only F32 is supported, as in our trainer.

A tensor here is a Raw: its shape and its little-endian float32 bytes.
as_floats/as_torch/as_numpy turn it into Python floats, a torch tensor or a
numpy array; from_floats/from_torch make one. Nothing here imports torch or
numpy unless those functions are called.
"""

import array
import ctypes
import json
import os
import struct
import sys
import tempfile

MAX_HEADER = 100 << 20  # the format's (and model.ReadSafetensors's) limit

if sys.byteorder != "little":  # the format is little-endian; so are x86 and arm64
    raise ImportError("stio assumes a little-endian machine")


class FormatError(ValueError):
    pass


class Raw:
    __slots__ = ("shape", "data")

    def __init__(self, shape, data):
        self.shape, self.data = [int(d) for d in shape], bytes(data)
        if len(self.data) != 4 * numel(self.shape):
            raise ValueError("shape %s needs %d bytes, got %d" % (self.shape, 4 * numel(self.shape), len(self.data)))


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def read(path):
    """Returns ({name: Raw}, {metadata key: value})."""
    with open(path, "rb") as f:
        buf = f.read()

    def bad(msg):
        return FormatError("%s: not a valid safetensors file: %s" % (path, msg))

    if len(buf) < 8:
        raise bad("file of %d bytes is too short for the header" % len(buf))
    (hl,) = struct.unpack_from("<Q", buf, 0)
    if hl > MAX_HEADER or 8 + hl > len(buf):
        raise bad("header length %d does not fit the file of %d bytes" % (hl, len(buf)))
    try:
        header = json.loads(buf[8:8 + hl].decode("utf-8"))
    except ValueError as e:
        raise bad("header is not JSON: %s" % e)
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    data = memoryview(buf)[8 + hl:]
    meta, tensors = {}, {}
    for name, e in header.items():
        if name == "__metadata__":
            if not isinstance(e, dict) or not all(isinstance(v, str) for v in e.values()):
                raise bad("metadata is not a map of strings")
            meta = dict(e)
            continue
        try:
            dtype, shape, (b, end) = e["dtype"], [int(d) for d in e["shape"]], e["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise bad("tensor %s: entry %r" % (name, e))
        if dtype != "F32":
            raise bad("tensor %s has dtype %s; only F32 is supported" % (name, dtype))
        if any(d < 0 for d in shape):
            raise bad("tensor %s has shape %s" % (name, shape))
        if not (0 <= b <= end <= len(data)) or end - b != 4 * numel(shape):
            raise bad("tensor %s: offsets %s do not hold shape %s in %d bytes of data" % (name, [b, end], shape, len(data)))
        tensors[name] = Raw(shape, data[b:end])
    return tensors, meta


def write(path, tensors, meta=None):
    """Writes {name: Raw} (and string metadata) as model.WriteSafetensors does:
    tensors in sorted name order, the header padded with spaces to a multiple
    of 8, to a temporary file renamed into place."""
    header, off = {}, 0
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(t.data)]}
        off += len(t.data)
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(js)))
            f.write(js)
            for name in names:
                f.write(tensors[name].data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def from_floats(shape, values):
    return Raw(shape, array.array("f", values).tobytes())


def as_floats(t):
    """The values as an array.array('f') (indexable Python floats)."""
    a = array.array("f")
    a.frombytes(t.data)
    return a


def as_numpy(t):
    import numpy as np
    return np.frombuffer(t.data, dtype="<f4").reshape(t.shape).copy()


def as_torch(t):
    import torch
    if numel(t.shape) == 0:
        return torch.zeros(t.shape, dtype=torch.float32)
    if not hasattr(torch, "frombuffer"):  # before torch 1.10: slow but plain
        return torch.tensor(as_floats(t), dtype=torch.float32).reshape(t.shape)
    # frombuffer shares the buffer's memory: clone so the tensor owns its own.
    return torch.frombuffer(bytearray(t.data), dtype=torch.float32).reshape(t.shape).clone()


def from_torch(x):
    """A Raw of a torch tensor (any device; converted to float32 on the CPU)."""
    import torch
    x = x.detach().to(device="cpu", dtype=torch.float32).contiguous()
    n = x.numel()
    return Raw(list(x.shape), ctypes.string_at(x.data_ptr(), 4 * n) if n else b"")


def load_torch(path, reader="auto"):
    """({name: torch tensor}, metadata). reader: "package" (the safetensors
    package), "ours" (this module), or "auto" (the package if importable)."""
    if reader in ("auto", "package"):
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file
        except ImportError:
            if reader == "package":
                raise
        else:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
            return load_file(path), dict(meta)
    raw, meta = read(path)
    return {k: as_torch(v) for k, v in raw.items()}, meta
