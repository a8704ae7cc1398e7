"""Phantom multi-parametric prostate MRI cohorts (`radlens synth`)."""
