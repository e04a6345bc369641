"""The audit log: the HMAC chain, signed checkpoints and export."""
