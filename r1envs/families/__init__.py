"""Procedural and data-backed task families."""
