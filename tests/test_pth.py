"""Tests for keras_mobile.weights.pth against checkpoints written by real torch.

The fixtures come from tests/data/make_pth_fixtures.py; torch is not needed here.
"""

import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_mobile.weights import pth

DATA = Path(__file__).parent / "data" / "pth"
MARKER = "PTH_FIXTURE_PAYLOAD_RAN"
TIMM_FILES = ["timm_zip.pth", "timm_legacy.pth.tar"]


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "expected.npz") as npz:
        return {key: npz[key] for key in npz.files}


def _with_prefix(expected, prefix):
    return {
        k.removeprefix(prefix): v for k, v in expected.items() if k.startswith(prefix)
    }


def _assert_arrays_equal(actual, expected):
    assert list(actual) == list(expected)
    for key, want in expected.items():
        got = actual[key]
        assert isinstance(got, np.ndarray), key
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)


def _fragment(value):
    """Pickle opcodes for a plain value, without the PROTO header and STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _float_tensor_pickle(size, stride, offset, numel):
    """Hand-written torch pickle of one float32 tensor viewing storage '0'."""
    storage_id = (
        b"("
        + _fragment("storage")
        + b"ctorch\nFloatStorage\n"
        + _fragment("0")
        + _fragment("cpu")
        + _fragment(numel)
        + b"tQ"
    )
    args = (
        storage_id
        + _fragment(offset)
        + _fragment(size)
        + _fragment(stride)
        + _fragment(False)
        + b"ccollections\nOrderedDict\n)R"
    )
    return b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + args + b"tR."


def _write_zip(path, data_pkl, storages=(), prefix="archive"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        for key, data in storages:
            archive.writestr(f"{prefix}/data/{key}", data)
        archive.writestr(f"{prefix}/version", "3\n")
    return path


@pytest.mark.parametrize("name", TIMM_FILES)
def test_timm_checkpoint(name, expected):
    checkpoint = pth.read_checkpoint(DATA / name)
    assert checkpoint["epoch"] == 3
    assert checkpoint["arch"] == "x"
    assert isinstance(checkpoint["args"], pth.ArgsNamespace)
    assert checkpoint["args"].lr == 0.1
    assert checkpoint["misc"] == {
        "tags": {"a", "b"},
        "frozen": frozenset({1, 2}),
        "blob": b"\x00\xffpth",
        "nothing": b"",
        "buffer": bytearray(b"ab"),
        "window": slice(1, 5, 2),
        "z": 1 + 2j,
        "shape": (2, 3),
    }
    state = pth.extract_state_dict(checkpoint)
    _assert_arrays_equal(state, _with_prefix(expected, "timm/"))


@pytest.mark.parametrize("name", TIMM_FILES)
def test_dtypes_and_layouts(name):
    state = pth.load_state_dict(DATA / name)
    assert state["conv.weight"].dtype == np.float32
    assert state["head.half"].dtype == np.float16
    assert state["head.bf16"].dtype == np.float32
    np.testing.assert_array_equal(state["head.bf16"][[0, 1, 4]], [1.5, -2.25, -0.0])
    assert state["bn.num_batches_tracked"].shape == ()
    assert state["bn.num_batches_tracked"].dtype == np.int64
    assert state["bn.num_batches_tracked"] == 7
    np.testing.assert_array_equal(state["pos.sliced"], np.arange(5, 12, dtype=np.int32))
    np.testing.assert_array_equal(state["shared.b"], state["shared.a"][1::3])
    assert state["mask"].dtype == np.bool_
    assert state["uint16"].dtype == np.uint16
    assert state["empty"].shape == (0, 3)
    # Arrays are independent, writable copies even where torch shared a storage.
    state["shared.a"][1] = 100.0
    assert state["shared.b"][0] != 100.0
    assert all(v.flags.c_contiguous and v.flags.writeable for v in state.values())


def test_zip_and_legacy_agree():
    zip_checkpoint = pth.read_checkpoint(DATA / "timm_zip.pth")
    legacy = pth.read_checkpoint(DATA / "timm_legacy.pth.tar")
    assert all(key.startswith("module.") for key in zip_checkpoint["state_dict"])
    assert not any(key.startswith("module.") for key in legacy["state_dict"])
    _assert_arrays_equal(pth.extract_state_dict(zip_checkpoint), legacy["state_dict"])


def test_plain_state_dict(expected):
    state = pth.load_state_dict(str(DATA / "plain.pth"))
    _assert_arrays_equal(state, _with_prefix(expected, "plain/"))


def test_big_endian_byteorder(expected):
    state = pth.load_state_dict(DATA / "plain_big_endian.pth")
    _assert_arrays_equal(state, _with_prefix(expected, "big/"))
    assert all(v.dtype.isnative for v in state.values())


def test_any_zip_prefix(tmp_path, expected):
    with zipfile.ZipFile(DATA / "plain.pth") as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(tmp_path / "renamed.pth", "w") as archive:
        for name, data in records.items():
            archive.writestr("my model-v2/" + name.partition("/")[2], data)
    state = pth.load_state_dict(tmp_path / "renamed.pth")
    _assert_arrays_equal(state, _with_prefix(expected, "plain/"))


def test_hand_written_tensor(tmp_path):
    data = np.arange(4, dtype="<f4").tobytes()
    path = _write_zip(
        tmp_path / "t.pth", _float_tensor_pickle((2, 2), (1, 2), 0, 4), [(0, data)]
    )
    np.testing.assert_array_equal(pth.read_checkpoint(path), [[0.0, 2.0], [1.0, 3.0]])


@pytest.mark.parametrize(
    ("size", "stride", "offset"),
    [((3, 2), (2, 1), 0), ((4,), (1,), 1), ((2,), (-1,), 1)],
)
def test_views_outside_storage_are_refused(tmp_path, size, stride, offset):
    data = np.arange(4, dtype="<f4").tobytes()
    pickled = _float_tensor_pickle(size, stride, offset, 4)
    path = _write_zip(tmp_path / "bad.pth", pickled, [(0, data)])
    with pytest.raises(ValueError, match="tensor view"):
        pth.read_checkpoint(path)


def test_extract_state_dict_search_order():
    a, b = {"w": np.zeros(1)}, {"w": np.ones(1)}
    assert pth.extract_state_dict({"state_dict_ema": a, "model": b})["w"] == 1
    assert pth.extract_state_dict({"model": "resnet", "model_ema": a})["w"] == 0
    mixed = {"module.w": np.zeros(1), "v": np.zeros(1)}
    assert list(pth.extract_state_dict(mixed)) == ["module.w", "v"]


def test_extract_state_dict_error_lists_keys():
    with pytest.raises(ValueError, match=r"'epoch', 'optimizer'"):
        pth.extract_state_dict({"epoch": 1, "optimizer": {}}, "ckpt.pth")
    with pytest.raises(ValueError, match="holds a list"):
        pth.extract_state_dict([np.zeros(1)])


@pytest.mark.parametrize(
    ("name", "callable_name"),
    [("malicious_zip.pth", "os system"), ("malicious_legacy.pth", "posix system")],
)
def test_malicious_checkpoint_is_refused(name, callable_name, tmp_path, monkeypatch):
    path = DATA / name
    raw = path.read_bytes()
    if name.endswith("zip.pth"):
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("archive/data.pkl")
    else:  # Skip the magic number, protocol and sys_info pickles.
        for _ in range(3):
            raw = raw[raw.index(b".") + 1 :]
    # The fixture really would call os.system when unpickled naively.
    assert ("GLOBAL", callable_name) in [
        (op.name, arg) for op, arg, _ in pickletools.genops(raw)
    ]

    monkeypatch.chdir(tmp_path)
    module = callable_name.split()[0]
    with pytest.raises(
        pth.UnsafeCheckpointError, match=rf"Refusing to unpickle '{module}\.system'"
    ):
        pth.read_checkpoint(path)
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize(
    "persistent_id",
    [("module", "x", "y", "z"), ("storage", "FloatStorage", "0", "cpu", 4), "0"],
)
def test_unknown_persistent_id_is_refused(tmp_path, persistent_id):
    pickled = b"\x80\x02" + _fragment(persistent_id) + b"Q."
    path = _write_zip(tmp_path / "pid.pth", pickled)
    with pytest.raises(pth.UnsafeCheckpointError, match="persistent id"):
        pth.read_checkpoint(path)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        pth.read_checkpoint(missing)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        pth.read_checkpoint(path)


def test_zip_without_pickle(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"data\.pkl"):
        pth.read_checkpoint(tmp_path / "other.zip")


def test_truncated_legacy_checkpoint(tmp_path):
    path = tmp_path / "cut.pth"
    path.write_bytes((DATA / "timm_legacy.pth.tar").read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        pth.read_checkpoint(path)
