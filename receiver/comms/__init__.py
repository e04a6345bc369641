"""Communication: notifications and the markup they are rendered with."""
