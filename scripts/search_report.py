"""The host study of hardware-aware search: results/search-host
(see keras_mobile/cli/search_report.py; --helpfull)."""

from keras_mobile.cli.search_report import run

if __name__ == "__main__":
    run()
