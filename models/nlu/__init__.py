"""Intent and emotion classifiers."""
