"""A run never loses work or misreports its state: finite-only checkpoints after a NaN,
one run per model_dir, resuming without the index file or past a truncated checkpoint,
reruns of a finished run, killed writers. Real processes and real files."""

import glob
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from keras_mobile import files, training
from keras_mobile.training import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = dict(model="MobileNetV2", model_kwargs={"alpha": 0.35}, image_size=32,
            train_split="train[:64]", eval_split="validation[:32]", verbose=0)


def _recipe(**overrides):
    base = dict(batch_size=16, reference_batch_size=16, epochs=1, warmup_epochs=0)
    return training.MAIN_JOB.replace(**{**base, **overrides})


def _checkpoint_is_finite(prefix) -> bool:
    reader = tf.train.load_checkpoint(prefix)
    values = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()]
    return all(np.isfinite(v).all() for v in values if np.asarray(v).dtype.kind == "f")


def _h5_is_finite(path) -> bool:
    arrays = []
    with h5py.File(path) as f:
        f.visititems(lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset)
                     else None)
    return all(np.isfinite(a).all() for a in arrays if np.asarray(a).dtype.kind == "f")


def test_nan_run_keeps_only_finite_files_and_the_advised_rerun_finishes(shapes_data_dir,
                                                                        tmp_path):
    common = dict(model_dir=str(tmp_path), data_dir=shapes_data_dir, checkpoint_every=1, **TINY)
    # The case: the main job's AdamW at learning rate 1e6, a checkpoint every step.
    diverging = training.TrainConfig(recipe=_recipe(learning_rate=1e6, epochs=2), **common)
    with pytest.raises(training.TrainingError, match="at step") as error:
        training.train(diverging)
    assert "Lower the learning rate" in str(error.value)
    written = sorted(glob.glob(str(tmp_path / "ckpt-*.index")))
    for index in written:
        assert _checkpoint_is_finite(index[:-len(".index")]), index
    latest = tf.train.latest_checkpoint(str(tmp_path))
    if latest:
        assert latest in str(error.value)  # the message names the checkpoint a rerun takes
    for name in ("best.weights.h5", "final.weights.h5"):
        if os.path.exists(tmp_path / name):
            assert _h5_is_finite(tmp_path / name), name
    # The advice, followed: the same model_dir with a sane learning rate finishes.
    rerun = training.train(training.TrainConfig(recipe=_recipe(learning_rate=1e-3, epochs=2),
                                                **common))
    assert rerun.steps == 8 and np.isfinite(rerun.history[-1]["loss"])
    assert _h5_is_finite(tmp_path / "final.weights.h5")


def test_resume_without_index_file_past_a_truncated_checkpoint(shapes_data_dir, tmp_path):
    common = dict(model_dir=str(tmp_path), data_dir=shapes_data_dir, checkpoint_every=2,
                  keep_checkpoints=5, **TINY)
    first = training.train(training.TrainConfig(recipe=_recipe(epochs=2), max_steps=6, **common))
    assert first.steps == 6
    # ckpt-2, ckpt-4 (end of epoch 1), ckpt-6 (the stop); lose the index, truncate ckpt-6.
    os.remove(tmp_path / "checkpoint")
    (data,) = glob.glob(str(tmp_path / "ckpt-6.data-*"))
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.warns(UserWarning) as caught:
        resumed = training.train(training.TrainConfig(recipe=_recipe(epochs=2), **common))
    messages = [str(w.message) for w in caught]
    assert any("ckpt-6 does not read back" in m for m in messages), messages
    assert any("resuming from" in m and "ckpt-4" in m for m in messages), messages
    assert resumed.resumed_from_step == 4 and resumed.steps == 8
    # A rerun of the finished run trains nothing and reports the run's throughput.
    again = training.train(training.TrainConfig(recipe=_recipe(epochs=2), **common))
    assert again.steps == again.resumed_from_step == 8
    assert again.images_per_second == resumed.images_per_second > 0


def test_unreadable_checkpoints_are_refused_not_restarted_over(shapes_data_dir, tmp_path):
    (tmp_path / "ckpt-3.index").write_bytes(b"not a checkpoint")
    (tmp_path / "ckpt-3.data-00000-of-00001").write_bytes(b"")
    config = training.TrainConfig(recipe=_recipe(), model_dir=str(tmp_path),
                                  data_dir=shapes_data_dir, **TINY)
    with pytest.warns(UserWarning, match="ckpt-3 does not read back"), \
            pytest.raises(ValueError, match="no checkpoint in .* reads back"):
        training.train(config)
    assert sorted(os.listdir(tmp_path)) == [".lock", "ckpt-3.data-00000-of-00001",
                                            "ckpt-3.index"]


def _holder(model_dir):
    """A real process that owns ``model_dir`` until killed."""
    code = ("import sys, time\nfrom keras_mobile.training import checkpoints\n"
            "with checkpoints.lock(sys.argv[1]):\n    print('locked', flush=True)\n"
            "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(model_dir)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
    return proc


def test_one_run_owns_a_model_dir_and_a_killed_owner_frees_it(shapes_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    holder = _holder(model_dir)
    try:
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO, "scripts", "train.py"), "--smoke",
             f"--data_dir={shapes_data_dir}", f"--model_dir={model_dir}"],
            capture_output=True, text=True, env=ENV, timeout=300, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert lines[-1] == (f"train.py: error: model_dir {model_dir} is in use by process "
                             f"{holder.pid}: one run at a time owns a model_dir. Wait for it "
                             "to finish, or pass another --model_dir.")
        assert os.listdir(model_dir) == [".lock"]  # nothing of the refused run
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the system drops the lock
        holder.wait()
    with checkpoints.lock(str(model_dir)):
        with checkpoints.lock(str(model_dir)):  # re-entrant in one process
            pass


def test_model_dir_that_is_a_file_is_one_line_before_any_work(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "train.py"), "--smoke",
                           f"--model_dir={path}", f"--data_dir={tmp_path / 'nowhere'}"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"train.py: error: model_dir must be a folder. Received: model_dir='{path}', an "
        "existing file.")
    assert path.read_text() == "keep me" and not os.path.exists(tmp_path / "nowhere")


_WRITER = """
import signal, sys, time
from keras_mobile import files
from keras_mobile.cli import _terminate
if sys.argv[2] == "term":
    signal.signal(signal.SIGTERM, _terminate)
with files.atomic_path(sys.argv[1]) as tmp:
    open(tmp, "wb").write(b"half a model")
    print("writing", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("how", ["term", "kill"])
def test_a_killed_writer_leaves_no_temporary_file(tmp_path, how):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"the good model")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), how], env=ENV,
                            text=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
    code = proc.wait(timeout=60)
    left = sorted(os.listdir(tmp_path))
    if how == "term":  # SIGTERM exits through Python: the writer removes its temporary file
        assert code == 128 + signal.SIGTERM and left == ["model.tflite"]
    else:  # SIGKILL runs nothing: the next writer of the same file removes the dead one's
        assert len(left) == 2
        time.sleep(0.1)
        files.atomic_write(target, b"a new model")
        assert sorted(os.listdir(tmp_path)) == ["model.tflite"]
    assert target.read_bytes() in (b"the good model", b"a new model")
