"""Read PyTorch checkpoints without torch and without running pickled code.

``torch.save`` writes a pickle whose tensors point at raw storages kept beside
it, either in a zip archive (torch >= 1.6) or appended after the pickle in the
legacy format. This module unpickles such files with an allow-list of globals
that are replaced by local, inert implementations, so tensors come back as
numpy arrays and anything else (code, classes, modules) is refused.
"""

import collections
import dataclasses
import os
import pickle
import struct
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# How the legacy format's leading magic number looks under each pickle protocol.
_LEGACY_HEADERS = tuple(
    pickle.dumps(_LEGACY_MAGIC, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)
)
_STATE_DICT_KEYS = ("state_dict", "model", "net", "state_dict_ema", "model_ema")

# torch dtype name -> numpy type code sans byte order; bfloat16 is read as raw bits.
_NUMPY_CODES = {
    "float64": "f8",
    "float32": "f4",
    "float16": "f2",
    "bfloat16": "u2",
    "int64": "i8",
    "int32": "i4",
    "int16": "i2",
    "int8": "i1",
    "uint64": "u8",
    "uint32": "u4",
    "uint16": "u2",
    "uint8": "u1",
    "bool": "?",
}
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}


class UnsafeCheckpointError(ValueError):
    """A checkpoint asked to load something other than tensors and plain data."""


class ArgsNamespace:
    """Inert stand-in for ``argparse.Namespace`` (e.g. timm's pickled training args)."""

    def __repr__(self):
        """Formats like ``argparse.Namespace``."""
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


@dataclasses.dataclass(frozen=True)
class _TorchType:
    """Inert stand-in for a torch dtype or storage class named in a pickle."""

    dtype: str


@dataclasses.dataclass(frozen=True)
class _Storage:
    """Raw bytes of one saved storage; ``data`` is None while only scanning."""

    dtype: str
    data: bytes | None
    byteorder: str


def _rebuild_tensor(storage, storage_offset, size, stride, dtype=None):
    """Copies a tensor out of its storage as a native-endian numpy array."""
    if not isinstance(storage, _Storage):
        raise TypeError(f"tensor data is a {type(storage).__name__}, not a storage")
    if storage.data is None:
        return None
    dtype = dtype.dtype if isinstance(dtype, _TorchType) else storage.dtype
    flat = np.frombuffer(
        storage.data, np.dtype(storage.byteorder + _NUMPY_CODES[dtype])
    )
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or min((storage_offset, *size, *stride)) < 0:
        raise ValueError(f"invalid tensor view: size {size}, stride {stride}")
    # Never let as_strided read outside the storage.
    end = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if 0 not in size and end >= flat.size:
        raise ValueError(
            f"tensor view {size} / {stride} + {storage_offset} exceeds its storage"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:],
        shape=size,
        strides=[s * flat.itemsize for s in stride],
        writeable=False,
    )
    if dtype == "bfloat16":
        return (view.astype(np.uint32, order="C") << 16).view(np.float32)
    return view.astype(view.dtype.newbyteorder("="), order="C")


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
):
    """Mirrors ``torch._utils._rebuild_tensor_v2`` (typed storages)."""
    array = _rebuild_tensor(storage, storage_offset, size, stride)
    # A negative view keeps its data un-negated and sets this bit instead.
    negated = array is not None and metadata and metadata.get("neg")
    return -array if negated else array


def _rebuild_tensor_v3(
    storage,
    storage_offset,
    size,
    stride,
    requires_grad,
    backward_hooks,
    dtype,
    metadata=None,
):
    """Mirrors ``torch._utils._rebuild_tensor_v3`` (untyped storage plus a dtype)."""
    if not isinstance(dtype, _TorchType):
        raise TypeError(f"tensor dtype is a {type(dtype).__name__}, not a torch dtype")
    return _rebuild_tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """Mirrors ``torch._utils._rebuild_parameter[_with_state]``; keeps the data."""
    return data


def _encode(text, encoding):
    """Rebuilds bytes, pickled by protocol 2 as ``_codecs.encode(text, 'latin1')``."""
    if encoding != "latin1":
        raise ValueError(f"unexpected bytes encoding {encoding!r}")
    return text.encode("latin1")


_SAFE_GLOBALS = {
    "collections.OrderedDict": collections.OrderedDict,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.storage.UntypedStorage": _TorchType("uint8"),
    "torch.Size": tuple,
    "argparse.Namespace": ArgsNamespace,
    "_codecs.encode": _encode,
}
# Protocol 2 names builtins after their Python 2 module, __builtin__.
_SAFE_GLOBALS.update(
    {
        f"{module}.{t.__name__}": t
        for module in ("builtins", "__builtin__")
        for t in (set, frozenset, slice, complex, bytes, bytearray)
    }
)
_SAFE_GLOBALS.update({f"torch.{n}": _TorchType(d) for n, d in _STORAGE_DTYPES.items()})
_SAFE_GLOBALS.update({f"torch.{d}": _TorchType(d) for d in _NUMPY_CODES})


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and torch storage ids.

    Args:
        file: Binary file positioned at the pickle.
        path: Checkpoint path, for error messages.
        load_storage: ``(key, dtype) -> bytes | None`` giving a storage's raw bytes.
        byteorder: ``"<"`` or ``">"``, the byte order of the storages.
    """

    def __init__(self, file, path, load_storage=None, byteorder="<"):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._load_storage = load_storage
        self._byteorder = byteorder
        self._storages = {}

    def find_class(self, module, name):
        """Returns the local stand-in for an allow-listed global, else refuses."""
        try:
            return _SAFE_GLOBALS[f"{module}.{name}"]
        except KeyError:
            raise UnsafeCheckpointError(
                f"Refusing to unpickle '{module}.{name}' from '{self._path}': only "
                "tensors and plain containers are allowed in a checkpoint."
            ) from None

    def persistent_load(self, pid):
        """Resolves ``('storage', type, key, location, numel[, view])`` ids."""
        if isinstance(pid, tuple) and len(pid) > 1 and isinstance(pid[0], bytes):
            pid = (pid[0].decode("ascii"), *pid[1:])
        known = (
            self._load_storage is not None
            and isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _TorchType)
            and pid[5:] in ((), (None,))
        )
        if not known:
            raise UnsafeCheckpointError(
                f"Refusing persistent id {pid!r} from '{self._path}': only tensor "
                "storages are allowed in a checkpoint."
            )
        key, dtype = pid[2], pid[1].dtype
        if key not in self._storages:
            data = self._load_storage(key, dtype)
            self._storages[key] = _Storage(dtype, data, self._byteorder)
        return self._storages[key]


def _read_zip(path):
    """Reads torch's zip format: ``<prefix>/data.pkl`` plus ``<prefix>/data/<key>``."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.partition("/")[2] == "data.pkl"]
        if not pickles:
            raise ValueError(
                "the zip archive has no '<name>/data.pkl'; torch.save did not write it"
            )
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = b"little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder")
        if byteorder not in (b"little", b"big"):
            raise ValueError(f"unknown byte order {byteorder!r}")
        unpickler = _SafeUnpickler(
            archive.open(pickles[0]),
            path,
            lambda key, dtype: archive.read(f"{prefix}data/{key}"),
            "<" if byteorder == b"little" else ">",
        )
        return unpickler.load()


def _read_legacy(path):
    """Reads torch's legacy format (``_use_new_zipfile_serialization=False``).

    Layout: pickles of the magic number, protocol version, sys info, the data
    and the list of storage keys; then per key an int64 element count and the
    little-endian elements. Storages follow the data pickle, so it is scanned
    once for their dtypes and unpickled for real after they are read.
    """
    with open(path, "rb") as file:
        if _SafeUnpickler(file, path).load() != _LEGACY_MAGIC:
            raise ValueError("bad magic number")
        if _SafeUnpickler(file, path).load() != _LEGACY_PROTOCOL:
            raise ValueError("unsupported legacy protocol version")
        _SafeUnpickler(file, path).load()  # sys_info: the data is little-endian anyway.
        start = file.tell()
        dtypes = {}
        _SafeUnpickler(file, path, dtypes.__setitem__).load()
        storages = {}
        for key in _SafeUnpickler(file, path).load():
            (numel,) = struct.unpack("<q", file.read(8))
            nbytes = numel * np.dtype(_NUMPY_CODES[dtypes[key]]).itemsize
            storages[key] = file.read(nbytes)
            if len(storages[key]) != nbytes:
                raise EOFError(f"storage {key!r} is truncated")
        file.seek(start)
        return _SafeUnpickler(file, path, lambda key, dtype: storages[key]).load()


def read_checkpoint(path):
    """Unpickles a PyTorch .pth / .pth.tar / .pt file without torch.

    Args:
        path: Path to a file written by ``torch.save`` in the zip (default since
            torch 1.6) or legacy format.

    Returns:
        The saved object, with plain Python containers, numpy arrays for tensors
        and ``ArgsNamespace`` for ``argparse.Namespace``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: The pickle references anything but tensors and
            plain data.
        ValueError: The file is not a readable PyTorch checkpoint.

    Example:
        >>> checkpoint = read_checkpoint("model_best.pth.tar")  # doctest: +SKIP
        >>> checkpoint["epoch"], checkpoint["args"].lr  # doctest: +SKIP
        (3, 0.1)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such checkpoint file: '{path}'")
    with open(path, "rb") as file:
        head = file.read(max(map(len, _LEGACY_HEADERS)))
    if zipfile.is_zipfile(path):
        reader = _read_zip
    elif head.startswith(_LEGACY_HEADERS):
        reader = _read_legacy
    else:
        raise ValueError(
            f"'{path}' is not a PyTorch checkpoint: it is neither a zip archive nor "
            "a legacy torch.save pickle."
        )
    try:
        return reader(path)
    except UnsafeCheckpointError:
        raise
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        AttributeError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        OverflowError,
        struct.error,
    ) as error:
        raise ValueError(f"Cannot read PyTorch checkpoint '{path}': {error}") from error


def _is_state_dict(obj):
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
        )
    )


def extract_state_dict(obj, path="<checkpoint>"):
    """Finds the state dict in a loaded checkpoint.

    Args:
        obj: Result of ``read_checkpoint``.
        path: Checkpoint path, for error messages.

    Returns:
        ``obj`` itself if it maps names to arrays, else the first such mapping
        under ``'state_dict'``, ``'model'``, ``'net'``, ``'state_dict_ema'`` or
        ``'model_ema'``; as a new dict without a ``'module.'`` prefix shared by
        all keys (left by ``DataParallel``).

    Raises:
        ValueError: No state dict was found.

    Example:
        >>> checkpoint = {"epoch": 3, "state_dict": {"module.fc.bias": np.zeros(2)}}
        >>> list(extract_state_dict(checkpoint))
        ['fc.bias']
    """
    candidates = [obj]
    if isinstance(obj, dict):
        candidates += [obj.get(key) for key in _STATE_DICT_KEYS]
    state = next((c for c in candidates if _is_state_dict(c)), None)
    if state is None:
        found = (
            f"keys {list(obj)}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        )
        raise ValueError(
            f"No state dict in '{path}': expected a mapping of names to tensors at "
            f"the top level or under one of {list(_STATE_DICT_KEYS)}; the checkpoint "
            f"holds {found}."
        )
    if all(key.startswith("module.") for key in state):
        return {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def load_state_dict(path):
    """Reads a PyTorch checkpoint and returns its state dict.

    Args:
        path: Path to a ``torch.save`` file.

    Returns:
        Parameter and buffer names mapped to numpy arrays.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: The checkpoint holds more than tensors and plain data.
        ValueError: The file is not a PyTorch checkpoint or holds no state dict.

    Example:
        >>> state = load_state_dict("mobilenext_100.pth")  # doctest: +SKIP
        >>> state["features.0.0.weight"].shape  # doctest: +SKIP
        (32, 3, 3, 3)
    """
    return extract_state_dict(read_checkpoint(path), os.fspath(path))
