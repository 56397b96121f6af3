"""The Bazel BUILD file parses and lists every package module and test file.

Bazel cannot run offline here (it fetches rules_python/rules_cc), so this test
stands in for `bazel query`: BUILD is Starlark, a subset of Python syntax.
"""

import ast
import glob
import os

from conftest import REPO


def _rules():
    tree = ast.parse(open(os.path.join(REPO, "BUILD")).read(), filename="BUILD")
    rules = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                      if not isinstance(k.value, ast.Call)}
            rules.append((call.func.id, kwargs))
    return rules


def test_library_lists_every_module():
    modules = sorted(os.path.relpath(p, REPO) for p in
                     glob.glob(os.path.join(REPO, "keras_mobile", "**", "*.py"), recursive=True))
    libraries = [kw for kind, kw in _rules() if kind == "py_library"]
    assert [lib["name"] for lib in libraries] == ["keras_mobile"]
    assert sorted(libraries[0]["srcs"]) == modules


def test_every_test_file_has_a_py_test():
    tests = sorted(os.path.relpath(p, REPO) for p in
                   glob.glob(os.path.join(REPO, "tests", "test_*.py")))
    py_tests = {kw["name"]: kw for kind, kw in _rules() if kind == "py_test"}
    assert sorted(kw["main"] for kw in py_tests.values()) == tests
    for kw in py_tests.values():
        assert kw["main"] in kw["srcs"] and ":keras_mobile" in kw["deps"]


def test_scripts_are_binaries():
    scripts = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "scripts",
                                                                               "*.py")))
    binaries = [kw["srcs"][0] for kind, kw in _rules() if kind == "py_binary"]
    assert sorted(binaries) == scripts
