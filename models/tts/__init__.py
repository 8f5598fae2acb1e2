"""Speech synthesis: Kokoro (onnxruntime), espeak-ng fallback, prompt cache, text normalisation."""
