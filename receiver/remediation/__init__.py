"""Remediation: rules, guards, targets, the worker that runs playbooks, verification."""
