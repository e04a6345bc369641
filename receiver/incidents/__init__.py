"""Incidents: their states, lifecycle, timers, post-mortem, report and metrics."""
