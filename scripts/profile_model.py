"""Parameters, MACs and memory of a model (see keras_mobile/cli/profile.py; --helpfull).

Not named profile.py: a script folder on sys.path would shadow the standard library's profile."""

from keras_mobile.cli.profile import run

if __name__ == "__main__":
    run()
