"""One call: state, session, playback, turn-taking."""
