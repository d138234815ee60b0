"""glan-ray: Personalized Landing-Page Modeling on Ray (GLAN, KLAN, and a PLPM simulator)."""

__version__ = "0.1.0"
