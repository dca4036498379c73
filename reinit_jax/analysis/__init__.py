"""Analyses of the papers: norms [Z], margins and sharpness [LW] §4, significance [LW] Table 3,
[HR] init diagnostics, plots, report.

Submodules are imported lazily by the caller (``from reinit_jax.analysis import margins``) so that
importing the package does not pull in matplotlib or scikit-learn.
"""
