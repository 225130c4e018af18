"""gguf_writer.py - a small GGUF (v3, little-endian) writer and ggml quantizers for tfab's tests,
written from the GGUF specification and ggml's block definitions."""
import struct

import numpy as np

# metadata value types (GGUF spec)
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
           BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}

# ggml tensor types
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 8, 30
QK = 32  # block size of q4_0 and q8_0


def _str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def f16_bits(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def bf16_bits(x):
    """Round-to-nearest-even f32 -> bf16 as ggml's ggml_compute_fp32_to_bf16 (NaN kept quiet)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    r[nan] = ((u[nan] >> 16) | 64).astype(np.uint16)
    return r


def bf16_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def quantize_q8_0(x):
    """ggml quantize_row_q8_0_ref: per 32 values d = amax/127 stored as f16, q = round(x/d)
    (roundf: half away from zero). Returns (bytes, dequantized f32 array)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, QK)
    amax = np.abs(x).max(axis=1)
    d = amax / 127.0
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    v = x * inv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)
    dh = d.astype(np.float16)
    out = bytearray()
    for i in range(x.shape[0]):
        out += dh[i].tobytes() + q[i].tobytes()
    deq = q.astype(np.float32) * dh.astype(np.float32)[:, None]
    return bytes(out), deq.reshape(-1)


def quantize_q4_0(x):
    """ggml quantize_row_q4_0_ref: per 32 values take the element of largest magnitude `max`
    (signed), d = max / -8, id = 1/d, q = min(15, (int8)(x*id + 8.5)); byte j holds element j in
    its low nibble and element j+16 in its high nibble. Returns (bytes, dequantized f32)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, QK)
    idx = np.argmax(np.abs(x), axis=1)
    mx = x[np.arange(x.shape[0]), idx]
    d = (mx / np.float32(-8)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    v = (x * inv[:, None] + np.float32(8.5)).astype(np.float32)
    q = np.minimum(15, np.trunc(v).astype(np.int8)).astype(np.uint8)
    dh = d.astype(np.float16)
    out = bytearray()
    for i in range(x.shape[0]):
        packed = (q[i, :16] | (q[i, 16:] << 4)).astype(np.uint8)
        out += dh[i].tobytes() + packed.tobytes()
    deq = (q.astype(np.float32) - 8.0) * dh.astype(np.float32)[:, None]
    return bytes(out), deq.reshape(-1)


def encode(x, ggml_type):
    """Encode a float array (last axis contiguous) as ggml_type; returns (bytes, the values the
    reader will see, as f32 with x's shape)."""
    x = np.asarray(x, dtype=np.float32)
    if ggml_type == GGML_F32:
        return x.tobytes(), x
    if ggml_type == GGML_F16:
        h = f16_bits(x)
        return h.tobytes(), h.astype(np.float32)
    if ggml_type == GGML_BF16:
        b = bf16_bits(x.reshape(-1))
        return b.tobytes(), bf16_to_f32(b).reshape(x.shape)
    if ggml_type == GGML_Q8_0:
        raw, deq = quantize_q8_0(x.reshape(-1))
        return raw, deq.reshape(x.shape)
    if ggml_type == GGML_Q4_0:
        raw, deq = quantize_q4_0(x.reshape(-1))
        return raw, deq.reshape(x.shape)
    raise ValueError("unsupported type %d" % ggml_type)


class GGUFWriter:
    """Collects key-value pairs and tensors, then writes one GGUF file. Tensor shapes are
    given numpy-style (slowest first); the file stores ggml order (ne[0] fastest)."""

    def __init__(self, alignment=32, version=3):
        self.kvs = []       # (key, type, value, elem_type)
        self.tensors = []   # (name, ne list, ggml type, raw bytes, offset override)
        self.alignment = alignment
        self.version = version
        if alignment != 32:
            self.add(("general.alignment"), U32, alignment)

    def add(self, key, vtype, value, elem_type=None):
        self.kvs.append((key, vtype, value, elem_type))

    def add_str(self, key, s):
        self.add(key, STRING, s)

    def add_u32(self, key, v):
        self.add(key, U32, v)

    def add_f32(self, key, v):
        self.add(key, F32, v)

    def add_array(self, key, elem_type, values):
        self.add(key, ARRAY, list(values), elem_type)

    def add_tensor_raw(self, name, shape, ggml_type, raw, offset=None):
        self.tensors.append((name, [int(d) for d in reversed(shape)], ggml_type, raw, offset))

    def add_tensor(self, name, x, ggml_type=GGML_F32):
        """Returns the f32 values a correct reader dequantizes to."""
        raw, seen = encode(x, ggml_type)
        self.add_tensor_raw(name, np.shape(x), ggml_type, raw)
        return seen

    def _value(self, vtype, v, elem_type):
        if vtype == STRING:
            return _str(v)
        if vtype == ARRAY:
            out = struct.pack("<IQ", elem_type, len(v))
            for e in v:
                out += self._value(elem_type, e, None)
            return out
        return struct.pack(_SCALAR[vtype], v)

    def to_bytes(self):
        out = bytearray(b"GGUF")
        out += struct.pack("<IQQ", self.version, len(self.tensors), len(self.kvs))
        for key, vtype, v, et in self.kvs:
            out += _str(key) + struct.pack("<I", vtype) + self._value(vtype, v, et)
        a = self.alignment
        offsets, off = [], 0
        for name, ne, t, raw, override in self.tensors:
            offsets.append(off if override is None else override)
            off += (len(raw) + a - 1) // a * a
        for (name, ne, t, raw, _), o in zip(self.tensors, offsets):
            out += _str(name) + struct.pack("<I", len(ne))
            out += b"".join(struct.pack("<Q", d) for d in ne)
            out += struct.pack("<IQ", t, o)
        out += b"\0" * ((-len(out)) % a)
        for name, ne, t, raw, _ in self.tensors:
            out += raw + b"\0" * ((-len(raw)) % a)
        return bytes(out)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())


def read_kvs(path):
    """The metadata of a GGUF file as a list of (key, type, value, elem_type), in the form
    GGUFWriter.add takes (e.g. to copy a vocabulary's tokenizer.* keys into a new file)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        raise ValueError("%s: not a GGUF file" % path)
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos = 24

    def rd_str():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        s = data[pos + 8:pos + 8 + n]
        pos += 8 + n
        return s.decode("utf-8", "surrogateescape")

    def rd_val(vt):
        nonlocal pos
        if vt == STRING:
            return rd_str()
        if vt == ARRAY:
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if et in _SCALAR:  # fast path for numeric arrays
                fmt = _SCALAR[et]
                size = struct.calcsize(fmt)
                vals = list(struct.unpack_from("<%d%s" % (n, fmt[1]), data, pos))
                pos += n * size
                return (et, vals)
            return (et, [rd_val(et) for _ in range(n)])
        fmt = _SCALAR[vt]
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    out = []
    for _ in range(n_kv):
        key = rd_str()
        (vt,) = struct.unpack_from("<I", data, pos)
        pos += 4
        v = rd_val(vt)
        if vt == ARRAY:
            out.append((key, vt, v[1], v[0]))
        else:
            out.append((key, vt, v, None))
    return out
