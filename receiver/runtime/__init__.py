"""Running the service: the gunicorn server, its HTTP worker and logging."""
