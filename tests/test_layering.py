"""The package's layers import one way, and tfmot is adapted in one module.

    keras_mobile.export        (export modes: picks the graph, then converts)
      -> keras_mobile.quantization   (which graph: QAT, percentile post-training int8)
      -> keras_mobile.tflite         (converts, writes atomically, checks parity)
    both -> keras_mobile.bridge (Keras 3 -> tf_keras), keras_mobile.data.samples (images)

Checked on the source (``ast``), so a function-level import counts as much as a
module-level one.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_mobile")
TFMOT_PRIVATE = "tensorflow_model_optimization.python"
ADAPTER = "quantization/tfmot_adapter.py"


def _modules(package: str = "") -> dict[str, ast.Module]:
    """``{path relative to keras_mobile/: parsed source}`` of a subpackage (or one module)."""
    base = os.path.join(ROOT, package)
    if os.path.isfile(base):
        paths = [base]
    else:
        paths = [os.path.join(root, name) for root, _, names in os.walk(base)
                 for name in names if name.endswith(".py")]
    parsed = {}
    for path in sorted(paths):
        with open(path, encoding="utf-8") as f:
            parsed[os.path.relpath(path, ROOT)] = ast.parse(f.read(), path)
    return parsed


def _imports(tree: ast.Module) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` in ``tree`` names, with
    ``from package import module`` as ``package.module`` too."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _offending(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path, tree in _modules(package).items():
        bad = sorted(name for name in _imports(tree)
                     if any(name == f or name.startswith(f + ".") for f in forbidden))
        if bad:
            found[path] = bad
    return found


@pytest.mark.parametrize("package, forbidden", [
    # tflite converts the graph it is given: it never decides which one.
    ("tflite", ("keras_mobile.quantization", "keras_mobile.training", "keras_mobile.export")),
    # quantization decides the graph; it never converts.
    ("quantization", ("keras_mobile.tflite", "keras_mobile.training", "keras_mobile.export")),
    # Neutral modules both use.
    ("bridge.py", ("keras_mobile.tflite", "keras_mobile.quantization", "keras_mobile.training",
                   "keras_mobile.export", "tensorflow_model_optimization")),
    ("data/samples.py", ("keras_mobile.tflite", "keras_mobile.quantization",
                         "keras_mobile.training", "keras_mobile.export")),
])
def test_layers_import_one_way(package, forbidden):
    assert _offending(package, forbidden) == {}


def test_only_the_adapter_reaches_into_tfmot():
    """tfmot's private modules, its environment switch and its patches: one module."""
    importers, mentions = [], []
    for path, tree in _modules().items():
        if any(name.startswith(TFMOT_PRIVATE) for name in _imports(tree)):
            importers.append(path)
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            source = f.read()
        if TFMOT_PRIVATE in source or "TF_USE_LEGACY_KERAS" in source:
            mentions.append(path)
    assert importers == [ADAPTER]
    assert mentions == [ADAPTER]


def test_the_export_modes_are_defined_once():
    """Every module that names the export modes takes them from keras_mobile.export."""
    from keras_mobile import export, tflite
    from keras_mobile.benchmark import result
    from keras_mobile.training import export as training_export

    assert result.MODES == export.EXPORT_MODES
    assert set(training_export.TFLITE_MODES) == set(export.EXPORT_MODES) - {"qat_int8"}
    assert set(export.CONVERSION_MODES) == set(export.EXPORT_MODES)
    assert set(export.CONVERSION_MODES.values()) == set(tflite.MODES)
    # No other list of modes: the converter's own (tflite.MODES, TOLERANCES) and the
    # detector export's tolerances per converter mode aside.
    lists = []
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) or not items:
                continue
            strings = {item.value for item in items if isinstance(item, ast.Constant)}
            if {"float16", "dynamic", "int8"} <= strings:
                lists.append(path)
    assert sorted(set(lists)) == ["detection/export.py", "export.py", "tflite/convert.py"]
