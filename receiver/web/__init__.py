"""Flask blueprints: webhook intake, incidents API, operational endpoints."""
