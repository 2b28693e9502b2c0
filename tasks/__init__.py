"""Shipped task definitions and data (package data of r1envs)."""
