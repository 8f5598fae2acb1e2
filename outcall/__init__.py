"""outcall composition root: settings, CLI, API and runtime wiring."""

__version__ = "0.1.0"
