"""dm-tune: measure llama-cpp-python settings and export the fastest profile that fits the VRAM."""

__version__ = "0.1.0"
