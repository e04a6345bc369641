"""remediator: Alertmanager webhook receiver, incident store and guarded remediation."""

__version__ = "0.1.0"
