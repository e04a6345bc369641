# remediator: gunicorn serving receiver.app:create_app(), as an unprivileged user.
# Build: docker build -t remediator .   Run: docker run -e REMEDIATOR_WEBHOOK_TOKEN=... \
#   -v $PWD/remediator.yml:/etc/remediator/remediator.yml:ro -p 9095:9095 remediator
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    REMEDIATOR_CONFIG=/etc/remediator/remediator.yml

# pg_dump/pg_restore/psql for backups and restore_database
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system remediator \
 && useradd --system --gid remediator --home-dir /var/lib/remediator --create-home remediator

WORKDIR /app
COPY pyproject.toml README.md ./
COPY receiver ./receiver
COPY playbooks ./playbooks
RUN pip install --no-compile .

USER remediator
WORKDIR /var/lib/remediator
EXPOSE 9095
# `remediator serve` applies migrations, then runs gunicorn with receiver.app:create_app()
# and one embedded worker; run `remediator worker` in more containers to scale out.
# serve's gunicorn worker class gives a thread only to complete requests, so slow or idle
# clients hold none (tests/e2e/test_slow_clients.py runs this very CMD with serve's
# defaults). Keep it `remediator serve`: a plain `gunicorn` command line would lose that.
CMD ["remediator", "serve", "--bind", "0.0.0.0:9095"]
