"""vlclean: clean image-classification datasets with Visual Layer exports, and measure the gain.

The library is split by concept; stages in ``stages/`` are thin wrappers that read params and call it.
"""

__version__ = "0.1.0"
