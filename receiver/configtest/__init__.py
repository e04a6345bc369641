"""``remediator test``: unit tests for a configuration, run through the receiver's own code."""
