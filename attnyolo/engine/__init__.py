"""Workflows as functions taking plain arguments: predict, summary, Darknet conversion."""
