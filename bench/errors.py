"""The suite's own error types: every failure a user can cause ends in one of these."""


class BenchError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class DataError(BenchError):
    """A dataset file or folder is missing, malformed or inconsistent."""


class ConfigError(BenchError):
    """An unknown name, a bad type or an impossible value in a configuration."""


class TrainingError(BenchError):
    """A trial failed while training (non-finite loss, out of memory, ...)."""
