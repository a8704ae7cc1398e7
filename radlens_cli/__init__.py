"""radlens: what fine-tuning changed inside a medical-imaging encoder, in radiomic terms."""

__version__ = "0.1.0"
