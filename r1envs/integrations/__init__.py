"""Bridges to other libraries (TRL, reasoning-gym)."""
