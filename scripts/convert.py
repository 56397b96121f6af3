"""Convert a registered model to TFLite (see keras_mobile/cli/convert.py; --helpfull)."""

from keras_mobile.cli.convert import run

if __name__ == "__main__":
    run()
