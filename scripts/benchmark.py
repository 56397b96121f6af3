"""Benchmark .tflite models on this host or an Android phone (see
keras_mobile/cli/benchmark.py; --helpfull)."""

from keras_mobile.cli.benchmark import run

if __name__ == "__main__":
    run()
