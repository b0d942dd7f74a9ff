"""Baseline policies and the references the simulator judges policies against."""
