"""Hardware-aware search: the most accurate network under a latency budget
(see keras_mobile/cli/search.py; --helpfull)."""

from keras_mobile.cli.search import run

if __name__ == "__main__":
    run()
