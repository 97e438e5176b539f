"""Logging a failure that repeats without flooding the log."""


def worth_logging(count: int) -> bool:
    """The `count`-th occurrence (from 1) is logged when it is the 1st, the 10th or a multiple of 100."""
    return count in (1, 10) or count % 100 == 0
