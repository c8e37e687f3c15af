"""liss: lifelong self-supervision for unpaired image-to-image translation."""

__version__ = "0.1.0"
