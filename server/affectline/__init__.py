"""Affectline: audience emotion measurement for media testing, with informed consent."""
__version__ = "0.1.0"
