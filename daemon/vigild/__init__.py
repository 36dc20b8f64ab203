"""vigild: an on-access malware scanner for Linux servers."""

__version__ = "0.1.0"
