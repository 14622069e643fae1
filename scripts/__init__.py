"""The commands (``python scripts/<name>.py``); importable as modules from the repository root (tests)."""
