"""Bad input: every case raises a clear Python exception, never a crash or a hang."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import mambalite

from helpers import export, make_hf_mamba2, make_hf_model, save_checkpoint


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    hf = make_hf_model(seed=21, vocab_size=96, hidden_size=32, num_hidden_layers=2)
    d = save_checkpoint(hf, tmp_path_factory.mktemp("err"))
    return export(d, "f32")


def rewrite(src, dst, *, arch=None, drop=(), reshape=None, kv=None, drop_kv=()):
    """Copies a GGUF file with changes, through the gguf package (an independent writer)."""
    r = gguf.GGUFReader(src)
    arch = arch or r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", *drop_kv):
            continue
        if name.startswith("mamba."):
            name = arch + name[len("mamba"):]
        w.add_key_value(name, field.contents(), field.types[0],
                        field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None)
    for key, (value, vtype) in (kv or {}).items():
        w.add_key_value(key, value, vtype)
    for t in r.tensors:
        if t.name in drop:
            continue
        data = np.array(t.data)
        if reshape and t.name in reshape:
            data = data.reshape(-1)[: int(np.prod(reshape[t.name]))].reshape(reshape[t.name])
        w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mambalite.load(tmp_path / "nope.gguf")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        mambalite.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"GG", b"not a gguf file at all" * 10,
                                     b"\x89PNG\r\n\x1a\n" + b"\0" * 100])
def test_not_gguf(tmp_path, content):
    p = tmp_path / "x.gguf"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="not a GGUF file|truncated"):
        mambalite.load(p)


def test_truncated_everywhere(good, tmp_path):
    data = good.read_bytes()
    r = gguf.GGUFReader(good)
    first_tensor = min(t.data_offset for t in r.tensors)
    info_start = r.fields["general.architecture"].offset  # inside the metadata
    points = {
        "header": [5, 12, 20],
        "metadata": [info_start + 3, info_start + 40, first_tensor // 3],
        "tensor table": [first_tensor - 200, first_tensor - 40],
        "data": [first_tensor + 10, len(data) // 2, len(data) - 1],
    }
    for where, cuts in points.items():
        for cut in cuts:
            p = tmp_path / f"cut{cut}.gguf"
            p.write_bytes(data[:cut])
            with pytest.raises(ValueError, match="truncated|corrupt") as e:
                mambalite.load(p)
            assert "Re-download or re-export" in str(e.value) or "corrupt" in str(e.value), where


def test_corrupt_counts(good, tmp_path):
    data = bytearray(good.read_bytes())
    data[8:16] = (2**62).to_bytes(8, "little")  # absurd tensor count
    p = tmp_path / "c.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        mambalite.load(p)


def test_wrong_architecture(good, tmp_path):
    with pytest.raises(ValueError, match="'llama' model"):
        mambalite.load(rewrite(good, tmp_path / "llama.gguf", arch="llama"))


def test_missing_and_misshaped_tensors_in_one_error(good, tmp_path):
    p = rewrite(good, tmp_path / "bad.gguf", drop=("blk.1.ssm_x.weight", "blk.0.ssm_d"),
                reshape={"blk.0.ssm_in.weight": (64, 32)})
    with pytest.raises(ValueError) as e:
        mambalite.load(p)
    msg = str(e.value)
    assert "3 problems" in msg
    assert "missing tensor 'blk.1.ssm_x.weight'" in msg
    assert "missing tensor 'blk.0.ssm_d'" in msg
    assert "'blk.0.ssm_in.weight' has shape {32, 64}, expected {32, 128}" in msg


@pytest.fixture(scope="module")
def good_mamba2(tmp_path_factory):
    hf = make_hf_mamba2(seed=22, vocab_size=96, hidden_size=32, num_heads=4, head_dim=16,
                        n_groups=2)
    return export(save_checkpoint(hf, tmp_path_factory.mktemp("err2")), "f32")


def test_mamba2_file_errors(good, good_mamba2, tmp_path):
    T = gguf.GGUFValueType.UINT32
    bad_groups = rewrite(good_mamba2, tmp_path / "g3.gguf", kv={"mamba2.ssm.group_count": (3, T)},
                         drop_kv=("mamba2.ssm.group_count",))
    with pytest.raises(ValueError, match="group_count to divide n_head.*group_count = 3"):
        mambalite.load(bad_groups)
    with pytest.raises(ValueError, match="missing tensor 'blk.1.ssm_norm.weight'"):
        mambalite.load(rewrite(good_mamba2, tmp_path / "nonorm.gguf",
                               drop=("blk.1.ssm_norm.weight",)))
    # A Mamba-1 file labelled Mamba-2: every mismatching tensor named, no crash.
    with pytest.raises(ValueError, match="is not a usable model") as e:
        mambalite.load(rewrite(good, tmp_path / "relabelled.gguf", arch="mamba2"))
    assert "missing tensor 'blk.0.ssm_norm.weight'" in str(e.value)


def test_missing_metadata(good, tmp_path):
    p = rewrite(good, tmp_path / "nometa.gguf", drop_kv=("mamba.ssm.state_size",))
    with pytest.raises(ValueError, match="lacks the metadata key 'mamba.ssm.state_size'"):
        mambalite.load(p)


def test_round_trip_through_gguf_package_still_loads(good, tmp_path):
    """The rewrite helper itself produces loadable files (so the failures above are real)."""
    m = mambalite.load(rewrite(good, tmp_path / "same.gguf"))
    np.testing.assert_array_equal(m.forward([1, 2, 3]), mambalite.load(good).forward([1, 2, 3]))


def test_bad_token_ids(good):
    m = mambalite.load(good)
    for ids in ([96], [-1], [1, 2, 10**6]):
        with pytest.raises(ValueError, match="out of range"):
            m.forward(ids)
    with pytest.raises(ValueError, match="empty"):
        m.forward([])
    with pytest.raises(TypeError):
        m.forward("text")
    with pytest.raises(TypeError, match="integers"):
        m.forward([1.5, 2.0])
    with pytest.raises(ValueError, match="1-D"):
        m.forward([[1, 2]])
    with pytest.raises(ValueError, match="out of range"):
        m.step(m.new_state(), 96)
    # The C++ layer checks too (callers of the bindings cannot bypass it).
    with pytest.raises(ValueError, match="out of range"):
        m._core.forward(np.array([1, 500], dtype=np.int32))


@pytest.mark.parametrize("kw,match", [
    (dict(temperature=-1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=1e9), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(min_p=-0.1), "min_p"),
    (dict(min_p=2), "min_p"),
    (dict(repetition_penalty=0), "repetition_penalty"),
    (dict(repetition_penalty=-2), "repetition_penalty"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(max_new_tokens=2.5), "max_new_tokens"),
    (dict(seed=-1), "seed"),
    (dict(seed=2**64), "seed"),
])
def test_bad_generation_parameters(good, kw, match):
    m = mambalite.load(good)
    with pytest.raises(ValueError, match=match):
        list(m.generate_tokens([1, 2], **kw))


def test_text_without_tokenizer(good):
    m = mambalite.load(good)
    with pytest.raises(ValueError, match="no tokenizer"):
        m.generate("hello")


@pytest.mark.parametrize("threads", [0, -1, 10**6, 1.5, "2"])
def test_bad_threads(good, threads):
    with pytest.raises(ValueError, match="threads"):
        mambalite.load(good, threads=threads)


@pytest.mark.parametrize("mmap", ["yes", 1, 0.0])
def test_bad_mmap(good, mmap):
    with pytest.raises(TypeError, match="mmap must be True, False or None"):
        mambalite.load(good, mmap=mmap)


def test_wrong_state_type(good):
    m = mambalite.load(good)
    with pytest.raises(TypeError, match="State"):
        m.prefill(object(), [1])
    with pytest.raises(TypeError, match="bytes"):
        m.state_from_bytes("not bytes")


def test_export_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mambalite.export(tmp_path / "missing", tmp_path / "o.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        mambalite.export(tmp_path / "empty", tmp_path / "o.gguf")
    d = tmp_path / "llama"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    (d / "model.safetensors").write_bytes(b"\x02\0\0\0\0\0\0\0{}")
    with pytest.raises(ValueError, match="not a Mamba checkpoint"):
        mambalite.export(d, tmp_path / "o.gguf")
    hf = make_hf_model(seed=1, vocab_size=64, hidden_size=16, num_hidden_layers=1)
    ok = save_checkpoint(hf, tmp_path / "ok")
    with pytest.raises(ValueError, match="unsupported export type"):
        mambalite.export(ok, tmp_path / "o.gguf", "q3_k")
    (ok / "model.safetensors").write_bytes((ok / "model.safetensors").read_bytes()[:200])
    with pytest.raises(ValueError, match="safetensors"):
        mambalite.export(ok, tmp_path / "o.gguf")
    assert not (tmp_path / "o.gguf").exists() and not (tmp_path / "o.gguf.part").exists()
