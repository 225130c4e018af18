#!/usr/bin/env python3
"""gguf_export.py - a small GGUF v3 writer and reader (stdlib only), written from the GGUF spec.

Used by train_tiny.py to export tfab-tiny; run directly to dump a GGUF file's metadata and
tensor index:  python3 tools/train/gguf_export.py dump models/tfab-tiny-f16.gguf

File layout (all little-endian):
  magic "GGUF", u32 version=3, u64 n_tensors, u64 n_kv,
  n_kv x (string key, u32 value_type, value),
  n_tensors x (string name, u32 n_dims, u64 ne[n_dims] (ne[0] = innermost/contiguous),
               u32 ggml_type, u64 offset relative to the data section),
  zero padding to general.alignment (32), the data section (each tensor aligned to 32).
Strings are u64 length + UTF-8 bytes (no NUL). Arrays are u32 elem_type, u64 count, elems.
"""
import struct
import sys

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGN = 32

# metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
           FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# ggml tensor types used here
GGML_F32, GGML_F16 = 0, 1
_TYPE_SIZE = {GGML_F32: 4, GGML_F16: 2}


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


class GGUFWriter:
    """Collects metadata and tensors, then writes the whole file with write(path).

    Metadata values are given with an explicit type: add(key, UINT32, 7),
    add(key, ARRAY, [..], elem_type=STRING). Tensors are given as raw little-endian bytes with
    ggml's dims (ne[0] first: a PyTorch [out, in] matrix is ne = [in, out])."""

    def __init__(self):
        self.kv = []       # (key, type, value, elem_type)
        self.tensors = []  # (name, ne, ggml_type, bytes)

    def add(self, key, vtype, value, elem_type=None):
        assert all(k != key for k, *_ in self.kv), f"duplicate key {key}"
        self.kv.append((key, vtype, value, elem_type))

    def add_tensor(self, name, ne, ggml_type, data):
        n = 1
        for d in ne:
            n *= d
        if len(data) != n * _TYPE_SIZE[ggml_type]:
            raise ValueError(f"{name}: {len(data)} bytes for ne={ne} type={ggml_type}")
        self.tensors.append((name, list(ne), ggml_type, bytes(data)))

    @staticmethod
    def _value(vtype, value, elem_type=None):
        if vtype == STRING:
            return _str(value)
        if vtype == ARRAY:
            out = [struct.pack("<IQ", elem_type, len(value))]
            if elem_type == STRING:
                out += [_str(v) for v in value]
            elif elem_type == ARRAY:
                raise ValueError("nested arrays not supported")
            else:
                out.append(struct.pack("<%d%s" % (len(value), _SCALAR[elem_type][1]), *value))
            return b"".join(out)
        return struct.pack(_SCALAR[vtype], value)

    def write(self, path):
        head = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv))]
        for key, vtype, value, et in self.kv:
            head += [_str(key), struct.pack("<I", vtype), self._value(vtype, value, et)]
        offset = 0
        offsets = []
        for name, ne, gt, data in self.tensors:
            offsets.append(offset)
            head += [_str(name), struct.pack("<I", len(ne)), struct.pack("<%dQ" % len(ne), *ne),
                     struct.pack("<IQ", gt, offset)]
            offset += (len(data) + ALIGN - 1) // ALIGN * ALIGN
        head = b"".join(head)
        with open(path, "wb") as f:
            f.write(head)
            f.write(b"\0" * (-len(head) % ALIGN))
            for (name, ne, gt, data), off in zip(self.tensors, offsets):
                f.write(data)
                f.write(b"\0" * (-len(data) % ALIGN))


def read(path):
    """Returns (metadata dict, tensor list [(name, ne, type, abs_offset, nbytes)])."""
    buf = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def value(t):
        if t == STRING:
            return string()
        if t == ARRAY:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(_SCALAR[t])

    assert buf[:4] == GGUF_MAGIC, "not a GGUF file"
    pos = 4
    version, nt, nkv = take("<I"), take("<Q"), take("<Q")
    assert version in (2, 3), version
    meta = {}
    for _ in range(nkv):
        k = string()
        meta[k] = value(take("<I"))
    infos = []
    for _ in range(nt):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        gt, off = take("<I"), take("<Q")
        infos.append((name, ne, gt, off))
    align = meta.get("general.alignment", ALIGN)
    data0 = (pos + align - 1) // align * align
    out = []
    for name, ne, gt, off in infos:
        n = 1
        for d in ne:
            n *= d
        out.append((name, ne, gt, data0 + off, n * _TYPE_SIZE.get(gt, 0)))
    return meta, out


def dump(path):
    meta, tensors = read(path)
    for k, v in meta.items():
        if isinstance(v, list):
            print(f"{k} = [{len(v)} items] {v[:8]!r}...")
        else:
            print(f"{k} = {v!r}")
    total = 0
    for name, ne, gt, off, nb in tensors:
        total += nb
        print(f"{name:28s} ne={ne} type={gt} offset={off} bytes={nb}")
    print(f"{len(tensors)} tensors, {total} bytes of tensor data")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
