"""tf.distribute strategies by name, and who is the chief."""

from __future__ import annotations

import functools
import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


class StrategyError(ValueError):
    """A strategy that cannot be created here, with the reason."""


def configure_cpu_devices(count: int) -> None:
    """Splits the host CPU into ``count`` logical devices (MirroredStrategy on CPU,
    for tests and debugging). Must run before TensorFlow initializes its devices."""
    if count <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise StrategyError(f"cpu_devices={count} must be set before TensorFlow starts: "
                            f"{error}") from None


@functools.cache
def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs, or the logical CPUs),
    ``multi_worker`` (machines in TF_CONFIG) or ``tpu`` (``tpu``: name or address).

    One strategy per (name, tpu) and process: a run's stages (float training,
    then the QAT fine-tune) share it, as collectives and the TPU system are set
    up once per process."""
    if name not in STRATEGIES:
        raise StrategyError(f"strategy must be one of {list(STRATEGIES)}. Received: {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        try:
            json.loads(os.environ.get("TF_CONFIG", ""))["cluster"]
        except (ValueError, KeyError, TypeError):
            raise StrategyError("strategy=multi_worker needs TF_CONFIG with a cluster and this "
                                'task, e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                                '"task": {"type": "worker", "index": 0}}') from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not tpu:
        raise StrategyError("strategy=tpu needs --tpu (a TPU name, grpc:// address or 'local').")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError, tf.errors.UnavailableError,
            RuntimeError) as error:
        raise StrategyError(f"strategy=tpu: no TPU found at tpu={tpu!r} "
                            f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
    return tf.distribute.TPUStrategy(resolver)


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """(task type, index) of this process; (None, 0) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The process that writes checkpoints, summaries and exports."""
    task_type, task_id = task(strategy)
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if task_type in (None, "chief"):
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster
