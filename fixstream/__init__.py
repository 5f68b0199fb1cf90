"""fixstream: bug reports in, validated fixes out, through pipelined Faust agents."""

__version__ = "0.1.0"
