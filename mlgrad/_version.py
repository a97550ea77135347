"""mlgrad's version: one place, read by the package (``mlgrad.__version__``), the build
(pyproject's dynamic version) and the run records (:mod:`mlgrad.runs.provenance`)."""

__version__ = "0.1.0"
