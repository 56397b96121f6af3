"""The README's main-job command, in its --smoke variant, runs end to end."""

import os
import subprocess
import sys

from conftest import REPO


def test_demo_smoke():
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--smoke", "--model=EMO1M"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "emo_1m @ 64x64x3: params" in out
    assert "Feature pyramid: {'P2': (16, 16, 32), 'P3': (8, 8, 48), 'P4': (4, 4, 80), " \
           "'P5': (2, 2, 168)}" in out
    assert "outputs identical = True" in out
    assert "sum of probabilities 1.0000" in out


def test_demo_rejects_an_unknown_model():
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"),
                             "--smoke", "--model=EMO3M"], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.returncode != 0
    assert "Unknown model. Received: name='EMO3M'" in result.stderr
