"""People: approvals and the signed links they are decided through."""
