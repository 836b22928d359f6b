"""perfbench: performance modelling and profiling of SSM, attention and hybrid language models."""

__version__ = "0.1.0"
