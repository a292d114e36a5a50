"""nas_kd: search the best student architecture for a fixed teacher network."""
__version__ = "0.1.0"
