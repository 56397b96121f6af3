"""The speed report: latency of every family and mode, ratios, int8 speed-ups,
training images/s (see keras_mobile/cli/speed_report.py; --helpfull)."""

from keras_mobile.cli.speed_report import run

if __name__ == "__main__":
    run()
