"""Speech recognisers: faster-whisper (utterances, zh/en) and vosk (streaming, operator model)."""
