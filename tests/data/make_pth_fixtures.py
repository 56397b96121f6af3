"""Writes the PyTorch checkpoint fixtures in tests/data/pth/ used by tests/test_pth.py.

Needs torch, which is never a dependency of keras_mobile. Run by hand from the
repository root, in a throwaway environment:

    python -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python tests/data/make_pth_fixtures.py

``python tests/data/make_pth_fixtures.py emo`` writes emo_1m_reference.pth alone.

Files written to tests/data/pth/:
    timm_zip.pth: timm-style checkpoint dict, zip format, 'module.'-prefixed keys.
    timm_legacy.pth.tar: the same dict without the prefix, legacy format.
    plain.pth: bare state dict of a small torch.nn model (zip format).
    plain_big_endian.pth: a state dict rewritten as a big-endian zip checkpoint.
    malicious_zip.pth, malicious_legacy.pth: hand-made pickles that would run
        ``touch PTH_FIXTURE_PAYLOAD_RAN`` through os.system if unpickled.
    expected.npz: expected arrays under 'timm/<key>', 'plain/<key>' and
        'big/<key>', with bfloat16 stored as float32.
    emo_1m_reference.pth: bare state dict (an OrderedDict in the official key order, no
        'module.' prefix, float32, int64 num_batches_tracked) of EMO-1M's weights in the
        compact reference tests/data/reference/emo_1m_seed2026.npz, whose official logits
        tests/test_weights.py checks the file against (~5.5 MB).
"""

import argparse
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "pth"
REFERENCE = Path(__file__).resolve().parent / "reference"
MARKER = "PTH_FIXTURE_PAYLOAD_RAN"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def timm_state_dict():
    """Tensors covering every dtype and view layout the reader supports."""
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(6, generator=g)
    return OrderedDict(
        [
            ("conv.weight", torch.randn(4, 3, 3, 3, generator=g)),
            ("conv.bias", torch.randn(4, generator=g)),
            ("bn.num_batches_tracked", torch.tensor(7)),
            ("head.half", torch.randn(2, 3, generator=g).half()),
            ("head.bf16", torch.tensor([1.5, -2.25, 3.1415926, 1e30, -0.0]).bfloat16()),
            ("proj.transposed", torch.randn(3, 4, generator=g).t()),
            ("pos.sliced", torch.arange(20, dtype=torch.int32)[5:12]),
            ("shared.a", shared),
            ("shared.b", shared.view(2, 3)[:, 1]),
            ("mask", torch.tensor([[True, False, True]])),
            ("int8", torch.tensor([-128, 0, 127], dtype=torch.int8)),
            ("uint8", torch.tensor([0, 7, 255], dtype=torch.uint8)),
            ("int16", torch.tensor([-32768, 5, 32767], dtype=torch.int16)),
            ("float64", torch.randn(2, generator=g).double()),
            ("uint16", torch.tensor([0, 1, 65535], dtype=torch.uint16)),
            ("expanded", torch.randn(3, 1, generator=g).expand(3, 4)),
            ("empty", torch.zeros(0, 3)),
            ("negated", torch._neg_view(torch.randn(3, generator=g))),
            ("param", torch.nn.Parameter(torch.randn(2, generator=g))),
        ]
    )


def as_numpy(tensor):
    tensor = tensor.detach().resolve_neg()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy().copy()


def timm_checkpoint(state_dict):
    return {
        "epoch": 3,
        "arch": "x",
        "args": argparse.Namespace(lr=0.1),
        "state_dict": state_dict,
        "misc": {
            "tags": {"a", "b"},
            "frozen": frozenset({1, 2}),
            "blob": b"\x00\xffpth",
            "nothing": b"",
            "buffer": bytearray(b"ab"),
            "window": slice(1, 5, 2),
            "z": 1 + 2j,
            "shape": torch.Size([2, 3]),
        },
    }


def to_big_endian(path, item_sizes):
    """Rewrites a zip checkpoint as big-endian; storage i has item_sizes[i] bytes."""
    with zipfile.ZipFile(path) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            prefix, _, key = name.rpartition("/data/")
            if name.endswith("/byteorder"):
                data = b"big"
            elif prefix and "/" not in prefix:
                dtype = np.dtype(f"<u{item_sizes[int(key)]}")
                data = np.frombuffer(data, dtype).byteswap().tobytes()
            archive.writestr(name, data)


def global_op(module, name):
    return f"c{module}\n{name}\n".encode()


def system_call_pickle(module):
    """A pickle that calls <module>.system('touch MARKER'), written opcode by opcode."""
    command = pickle.dumps(f"touch {MARKER}", protocol=2)[2:-1]  # BINUNICODE + BINPUT.
    return (
        b"\x80\x02" + global_op(module, "system") + command + b"\x85R."
    )  # TUPLE1 REDUCE STOP


def emo_reference_state_dict():
    """EMO-1M's official state dict regenerated from its compact reference file."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/reference.py
    import reference

    with np.load(REFERENCE / "emo_1m_seed2026.npz") as npz:
        arrays = reference.state_dict(npz)
        kinds = {key: kind for key, _, kind in reference.listing(npz)}
    return OrderedDict(
        (key, torch.tensor(int(value), dtype=torch.int64) if kinds[key] == "counter"
         else torch.from_numpy(value))
        for key, value in arrays.items()
    )


def write_emo_reference():
    """emo_1m_reference.pth: the reference weights as torch.save() writes a state dict."""
    OUT.mkdir(parents=True, exist_ok=True)
    state = emo_reference_state_dict()
    torch.save(state, OUT / "emo_1m_reference.pth")
    reloaded = torch.load(OUT / "emo_1m_reference.pth", weights_only=True)
    assert list(reloaded) == list(state) and all(
        reloaded[k].dtype == v.dtype and torch.equal(reloaded[k], v) for k, v in state.items()
    ), "EMO reference round trip failed"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_emo_reference()
    expected = {}

    state = timm_state_dict()
    expected.update({f"timm/{k}": as_numpy(v) for k, v in state.items()})
    prefixed = OrderedDict((f"module.{k}", v) for k, v in state.items())
    torch.save(timm_checkpoint(prefixed), OUT / "timm_zip.pth")
    torch.save(
        timm_checkpoint(state),
        OUT / "timm_legacy.pth.tar",
        _use_new_zipfile_serialization=False,
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    model[1].num_batches_tracked += 5
    plain = model.state_dict()
    expected.update({f"plain/{k}": as_numpy(v) for k, v in plain.items()})
    torch.save(plain, OUT / "plain.pth")

    # One storage per tensor, so storage i belongs to the i-th value.
    big = {"w": torch.randn(2, 3), "steps": torch.tensor(9), "h": torch.randn(3).half()}
    expected.update({f"big/{k}": as_numpy(v) for k, v in big.items()})
    torch.save(big, OUT / "plain_big_endian.pth")
    to_big_endian(
        OUT / "plain_big_endian.pth", [v.element_size() for v in big.values()]
    )
    reloaded = torch.load(OUT / "plain_big_endian.pth", weights_only=True)
    assert all(torch.equal(reloaded[k], v) for k, v in big.items()), (
        "big-endian rewrite failed"
    )

    with zipfile.ZipFile(OUT / "malicious_zip.pth", "w") as archive:
        archive.writestr("archive/data.pkl", system_call_pickle("os"))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    header = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    (OUT / "malicious_legacy.pth").write_bytes(
        header + system_call_pickle("posix") + pickle.dumps([], protocol=2)
    )

    np.savez_compressed(OUT / "expected.npz", **expected)
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:6d}  {path.name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="?", choices=["emo"],
                        help="write only this fixture (emo: emo_1m_reference.pth)")
    if parser.parse_args().only == "emo":
        write_emo_reference()
        print(f"{(OUT / 'emo_1m_reference.pth').stat().st_size:6d}  emo_1m_reference.pth")
    else:
        main()
