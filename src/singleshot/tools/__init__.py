"""Command-line tools around the library that are not training or evaluation (``singleshot check-data``)."""
