#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: small valid and near-valid inputs for each loader.

    python3 fuzz/make_corpus.py        # rewrites fuzz/corpus/{safetensors,idx,text,npy,onnx}/

The ONNX seeds need the onnx package (.venv/bin/python has it: tools/install_deps.sh).

The fuzzers mutate these; the ordinary test suite replays them (tests/io/fuzz_replay_test.cpp).
Files are a few hundred bytes each: fuzzing works best from small inputs.
"""
import gzip
import io
import os
import struct
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# --- safetensors ------------------------------------------------------------------------------

def safetensors(header, data, checksum=False):
    """8-byte little-endian length, the header padded with spaces to 8, the data. With checksum,
    the header must start with Fovea's checksum entry (8 zero digits), filled in here the way
    save_safetensors does: CRC-32 of the padded header with zero digits, then of the data."""
    header = header.encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    if checksum:
        prefix = b'{"__metadata__":{"fovea.checksum":"crc32:'
        assert header.startswith(prefix + b"00000000")
        crc = zlib.crc32(data, zlib.crc32(header)) & 0xFFFFFFFF
        header = prefix + b"%08x" % crc + header[len(prefix) + 8:]
    return struct.pack("<Q", len(header)) + header + data


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def tensor(dtype, shape, begin, end):
    return '{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}' % (dtype, ",".join(map(str, shape)), begin, end)


def safetensors_seeds():
    six = f32(1, 2, 3, 4, 5, 6)
    step = struct.pack("<q", 1200)
    fovea = ('{"__metadata__":{"fovea.checksum":"crc32:00000000","epoch":"7"},"mlp/w":%s,"adam/step":%s}'
             % (tensor("F32", [2, 3], 0, 24), tensor("I64", [], 24, 32)))
    write("safetensors", "fovea_checksummed", safetensors(fovea, six + step, checksum=True))
    write("safetensors", "fovea_bad_checksum", safetensors(fovea, six + step))  # digits left at zero
    write("safetensors", "fovea_empty", safetensors('{"__metadata__":{"fovea.checksum":"crc32:00000000"}}', b"",
                                                     checksum=True))
    # The way Python's safetensors lays files out: largest alignment first, "format" metadata.
    python = ('{"__metadata__":{"format":"pt"},"a":%s,"b":%s,"m":%s,"n":%s}'
              % (tensor("F32", [2], 16, 24), tensor("F64", [1, 1], 0, 8), tensor("BOOL", [3], 28, 31),
                 tensor("I32", [1], 24, 28)) )
    write("safetensors", "python_layout",
          safetensors(python, struct.pack("<d", -7.5) + b"\0" * 8 + f32(1.5, -2) + struct.pack("<i", 9) + b"\1\0\1"))
    write("safetensors", "no_tensors", safetensors("{}", b""))
    write("safetensors", "zero_dim", safetensors('{"z":%s}' % tensor("F32", [0, 4], 0, 0), b""))
    write("safetensors", "overlap",
          safetensors('{"a":%s,"b":%s}' % (tensor("F32", [2], 0, 8), tensor("F32", [1], 4, 8)), f32(1, 2)))
    write("safetensors", "gap", safetensors('{"a":%s}' % tensor("F32", [1], 4, 8), f32(1, 2)))
    write("safetensors", "truncated_data", safetensors('{"a":%s}' % tensor("F32", [4], 0, 16), f32(1, 2)))
    write("safetensors", "half_dtype", safetensors('{"h":%s}' % tensor("F16", [2], 0, 4), b"\0" * 4))
    write("safetensors", "bool_two", safetensors('{"b":%s}' % tensor("BOOL", [2], 0, 2), b"\1\2"))
    write("safetensors", "metadata_not_string", safetensors('{"__metadata__":{"k":[1,{"x":null}]}}', b""))
    write("safetensors", "shape_overflow",
          safetensors('{"a":%s}' % tensor("F32", [4294967296, 4294967296, 4], 0, 4), f32(1)))
    write("safetensors", "nested_too_deep", safetensors('{"a":' + "[" * 20 + "]" * 20 + "}", b""))
    write("safetensors", "escapes", safetensors('{"__metadata__":{"\\u00e9\\"":"\\ud83d\\ude00\\n"},"x\\/y":%s}'
                                                % tensor("I32", [1], 0, 4), struct.pack("<i", -1)))
    write("safetensors", "length_past_end", struct.pack("<Q", 1000) + b'{"a":1}')
    write("safetensors", "short", b"\x08\0\0")


# --- IDX --------------------------------------------------------------------------------------

def idx(type_code, dims, payload):
    return bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_seeds():
    images = idx(0x08, [2, 2, 3], bytes(range(12)))
    write("idx", "u8_images", images)
    write("idx", "u8_images_gz", gzip.compress(images, mtime=0))
    write("idx", "u8_labels_gz", gzip.compress(idx(0x08, [5], bytes([0, 9, 3, 1, 7])), mtime=0))
    write("idx", "i8", idx(0x09, [3], bytes([0x80, 0x7F, 0xFF])))
    write("idx", "i16", idx(0x0B, [2], struct.pack(">hh", -300, 300)))
    write("idx", "i32", idx(0x0C, [1, 2], struct.pack(">ii", -(2 ** 31), 2 ** 31 - 1)))
    write("idx", "f32", idx(0x0D, [2], struct.pack(">ff", 1.5, float("nan"))))
    write("idx", "f64", idx(0x0E, [1], struct.pack(">d", -0.0)))
    write("idx", "rank0", idx(0x08, [], b"\x2a"))
    write("idx", "zero_dim", idx(0x0D, [0, 5], b""))
    write("idx", "truncated", idx(0x0C, [4], b"\0" * 7))
    write("idx", "trailing_bytes", idx(0x08, [1], b"\1\2"))
    write("idx", "absurd_dims", idx(0x0E, [65536, 65536, 65536], b""))
    write("idx", "bad_magic", b"\x1f\0\x08\x01\0\0\0\x01\x07")
    write("idx", "gz_truncated", gzip.compress(images, mtime=0)[:-5])


# --- Text -------------------------------------------------------------------------------------

def text_seeds():
    fortune = (b"Q: What is a computer?\nA: A machine that does what you say, not what you mean.\n%\n"
               b"The best way to predict the future is to invent it.\n\t\t-- Alan Kay\n%\n")
    write("text", "fortune_ctx8", bytes([7, 13]) + fortune)
    write("text", "utf8_ctx4", bytes([3, 64]) + "naïve café – ½ λ 日本語\n".encode() * 3)
    write("text", "all_bytes", bytes([0, 128]) + bytes(range(256)))
    write("text", "too_short", bytes([15, 13]) + b"tiny")
    write("text", "one_byte_repeated", bytes([1, 1]) + b"a" * 40)
    write("text", "no_text", bytes([0, 0]))


# --- NumPy .npy and .npz ----------------------------------------------------------------------

def npy(header, data, version=1):
    """The magic, the version, the header dict padded with spaces and a newline to 64 bytes as
    numpy.save pads it, then the data."""
    prefix = 10 if version == 1 else 12
    header = header.encode()
    header += b" " * (64 - (prefix + len(header) + 1) % 64) + b"\n"
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + data


def npy_dict(descr, shape, fortran=False):
    shape_text = "(%s,)" % shape[0] if len(shape) == 1 else "(%s)" % ", ".join(map(str, shape))
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape_text)


def npz(members, compression=zipfile.ZIP_STORED):
    """A zip archive as numpy.savez writes it (zip64 extra fields forced on every member), with
    fixed timestamps so the seeds do not change from run to run."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            with archive.open(info, "w", force_zip64=True) as member:
                member.write(data)
    return out.getvalue()


def npy_seeds():
    six = f32(0, 1, 2, 3, 4, 5)
    arange = npy(npy_dict("<f4", [2, 3]), six)
    write("npy", "f4_2x3", arange)
    write("npy", "f8_scalar", npy(npy_dict("<f8", []), struct.pack("<d", 2.5)))
    write("npy", "b1_bools", npy(npy_dict("|b1", [3]), b"\1\0\1"))
    write("npy", "f2_halves", npy(npy_dict("<f2", [2]), struct.pack("<ee", 1.0, -2.0)))
    write("npy", "i8_fortran", npy(npy_dict("<i8", [2, 3], fortran=True), struct.pack("<6q", 0, 3, 1, 4, 2, 5)))
    write("npy", "i4_empty_v2", npy(npy_dict("<i4", [3, 0]), b"", version=2))
    write("npy", "f4_big_endian", npy(npy_dict(">f4", [1]), struct.pack(">f", 1)))
    write("npy", "u1_unsupported", npy(npy_dict("|u1", [2]), b"\1\2"))
    write("npy", "bad_dict", npy("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}", f32(1)))
    write("npy", "absurd_shape", npy(npy_dict("<f8", [2 ** 40, 2 ** 40]), b""))
    write("npy", "truncated_data", arange[:-3])
    members = [("w.npy", arange), ("flags.npy", npy(npy_dict("|b1", [2]), b"\1\0"))]
    write("npy", "npz_stored", npz(members))
    write("npy", "npz_deflated", npz(members, zipfile.ZIP_DEFLATED))
    bad_crc = bytearray(npz(members[:1]))
    bad_crc[len(bad_crc) // 2] ^= 1
    write("npy", "npz_bad_crc", bytes(bad_crc))
    write("npy", "npz_not_npy_member", npz([("notes.txt", b"hello")]))


# --- ONNX models -------------------------------------------------------------------------------

def onnx_seeds():
    try:
        import numpy as np
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        print("no onnx package: the ONNX seeds are left as they are")
        return

    def model(nodes, inputs, outputs, initializers=(), opset=17):
        graph = helper.make_graph(nodes, "seed", inputs, outputs, list(initializers))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()

    def info(name, shape, elem=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, elem, shape)

    def weights(name, shape):
        return numpy_helper.from_array(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 10, name)

    write("onnx", "relu", model([helper.make_node("Relu", ["x"], ["y"])], [info("x", [2, 3])], [info("y", [2, 3])]))
    mlp = model([helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1), helper.make_node("Softmax", ["h"], ["y"])],
                [info("x", [2, 4])], [info("y", [2, 3])], [weights("w", [3, 4]), weights("b", [3])])
    write("onnx", "gemm_softmax", mlp)
    write("onnx", "gemm_truncated", mlp[: len(mlp) // 2])
    shape_chain = model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"]),
                         helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
                         helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
                         helper.make_node("Reshape", ["x", "shape"], ["y"])],
                        [info("x", [2, 3, 4])], [info("y", [2, 12])],
                        [numpy_helper.from_array(np.array(0, np.int64), "zero"),
                         numpy_helper.from_array(np.array([0], np.int64), "axes"),
                         numpy_helper.from_array(np.array([-1], np.int64), "minus_one")])
    write("onnx", "shape_chain", shape_chain)
    conv = model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                  helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                 [info("x", [1, 1, 4, 4])], [info("y", [1, 2, 2, 2])], [weights("w", [2, 1, 3, 3])])
    write("onnx", "conv_pool", conv)
    symbolic = model([helper.make_node("Neg", ["x"], ["y"])], [info("x", ["batch", 3])], [info("y", ["batch", 3])])
    write("onnx", "symbolic_dim", symbolic)
    external = weights("w", [3, 3])
    external.ClearField("raw_data")
    external.data_location = TensorProto.EXTERNAL
    external.external_data.add(key="location", value="../outside.bin")
    write("onnx", "external_escape", model([helper.make_node("MatMul", ["x", "w"], ["y"])], [info("x", [1, 3])],
                                           [info("y", [1, 3])], [external]))
    write("onnx", "old_opset", model([helper.make_node("Add", ["x", "x"], ["y"], broadcast=0)],
                                     [info("x", [2])], [info("y", [2])], opset=6))


if __name__ == "__main__":
    safetensors_seeds()
    idx_seeds()
    text_seeds()
    npy_seeds()
    onnx_seeds()
