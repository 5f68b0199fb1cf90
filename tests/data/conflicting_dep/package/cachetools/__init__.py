"""cachetools 0.0.1: the first release, before caches were classes (a stand-in built by the
tests; the real cachetools has no ``memo_key``)."""

__version__ = "0.0.1"


def memo_key(*args, **kwargs):
    """A hashable key for a call's arguments."""
    return args + tuple(sorted(kwargs.items()))
