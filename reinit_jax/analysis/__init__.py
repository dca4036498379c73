"""Analyses of SPEC §6: norms, margins, sharpness, significance, [HR] init diagnostics, plots, report.

Submodules are imported lazily by the caller (``from reinit_jax.analysis import margins``) so that
importing the package does not pull in matplotlib or scikit-learn.
"""
