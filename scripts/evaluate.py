"""Top-1 of a classifier or COCO AP of a detector: a training run or a .tflite file (see
keras_mobile/cli/evaluate.py; --helpfull)."""

from keras_mobile.cli.evaluate import run

if __name__ == "__main__":
    run()
