"""veracity: find, elicit, steer and measure truthfulness inside language models."""

__version__ = "0.1.0"
