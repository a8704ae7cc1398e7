"""radlens: what fine-tuning changed inside a medical-imaging encoder, in radiomic terms."""

__version__ = "0.5.0"  # the one place the version is defined (pyproject reads it)
