"""Intake: an Alertmanager notification becomes an incident, its alerts and its jobs."""
