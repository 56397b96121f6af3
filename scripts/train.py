"""Train, evaluate, export, benchmark and report (see keras_mobile/cli/train.py; --helpfull).

With no flags: the main job on the embedded dataset."""

from keras_mobile.cli.train import run

if __name__ == "__main__":
    run()
