"""Dialplans: schema, loader, runner, grading."""
