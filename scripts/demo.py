"""Build, profile and run a keras_mobile model (see keras_mobile/demo.py; --helpfull)."""

from keras_mobile.demo import run

if __name__ == "__main__":
    run()
