"""absl-flag command-line tools; ``scripts/*.py`` and the console commands call ``run``."""
