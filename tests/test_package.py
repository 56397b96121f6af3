"""The package's import surface: lazy subpackages (PEP 562) and what `import keras_mobile` loads."""

import json
import os
import re
import subprocess
import sys

import pytest

LAZY = ("benchmark", "data", "export", "quantization", "tflite", "training")
# A clean environment: an earlier test's tfmot import sets TF_USE_LEGACY_KERAS in this process.
ENV = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
HEAVY = ("tensorflow_model_optimization", "tf_keras", "tensorflow_datasets")


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**ENV, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_loads_no_tfmot_tf_keras_or_tfds():
    loaded = _run("import sys, json, keras_mobile\n"
                  f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert loaded == []


def test_subpackages_resolve_on_attribute_access():
    code = ("import sys, json, keras_mobile as km\n"
            "before = 'keras_mobile.tflite' in sys.modules\n"
            "names = dict(convert=km.tflite.convert.__name__,\n"
            "             quantize=km.quantization.quantize_model.__name__,\n"
            "             results=km.benchmark.read_results.__name__,\n"
            "             train=km.training.train.__name__,\n"
            "             data=km.data.dataset_info.__name__,\n"
            "             export=km.export.export.__name__)\n"
            "print(json.dumps(dict(before=before, names=names,\n"
            "                      dir=[n for n in " + repr(LAZY) + " if n in dir(km)])))")
    result = _run(code)
    assert result["before"] is False  # loaded by the access, not by the import
    assert result["names"] == dict(convert="convert", quantize="quantize_model",
                                   results="read_results", train="train", data="dataset_info",
                                   export="export")
    assert result["dir"] == list(LAZY)


def test_unknown_attribute_is_an_attribute_error():
    import keras_mobile  # noqa: PLC0415

    with pytest.raises(AttributeError, match="has no attribute 'tflit'"):
        keras_mobile.tflit  # noqa: B018


def _stderr_of_import(**env) -> list[str]:
    base = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", "import keras_mobile"], capture_output=True,
                         text=True, check=True, env={**base, **env})
    return out.stderr.splitlines()


def test_import_prints_no_tensorflow_info_lines_unless_asked():
    info = re.compile(r"^I\d{4} ")
    assert [line for line in _stderr_of_import() if info.match(line)] == []
    # TF_CPP_MIN_LOG_LEVEL=0 asks for everything: TensorFlow's start-up INFO lines show.
    assert any(info.match(line) for line in _stderr_of_import(TF_CPP_MIN_LOG_LEVEL="0"))
