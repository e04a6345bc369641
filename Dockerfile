# remediator: gunicorn serving receiver.app:create_app(), as an unprivileged user.
#
# Build: scripts/build-image.sh [TAG]   (wheels made outside the build, then docker build)
#   or:  pip wheel . -w build/wheels && docker build -t remediator .
# Nothing in the build reaches the network but the base's own package manager (and only
# when the base lacks the PostgreSQL client): the project and its dependencies are
# installed from build/wheels, the only thing .dockerignore lets into the context.
# Run:   docker run -e REMEDIATOR_WEBHOOK_TOKEN=... -p 9095:9095 \
#          -v $PWD/remediator.yml:/etc/remediator/remediator.yml:ro remediator
# To let playbooks reach dockerd, mount its socket and add the socket's group:
#          -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)"
ARG BASE=python:3.11-slim

FROM ${BASE} AS builder
LABEL org.remediator.stage=builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY build/wheels/ /wheels/
RUN python3 -m venv /opt/remediator \
 && /opt/remediator/bin/pip install --no-index --find-links /wheels --no-compile remediator \
 && /opt/remediator/bin/python -m pip uninstall --yes --quiet pip setuptools

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8 \
    PATH=/opt/remediator/bin:$PATH \
    REMEDIATOR_CONFIG=/etc/remediator/remediator.yml

# pg_dump/pg_restore/psql for backups and restore_database (a base made by
# scripts/build-image.sh has them already).
RUN if ! command -v pg_dump >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends postgresql-client \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system remediator \
 && useradd --system --gid remediator --home-dir /var/lib/remediator --create-home remediator \
 && mkdir -p /etc/remediator

COPY --from=builder /opt/remediator /opt/remediator

USER remediator
WORKDIR /var/lib/remediator
EXPOSE 9095
# `remediator serve` applies migrations, then runs gunicorn with receiver.app:create_app()
# and one embedded worker; run `remediator worker` in more containers to scale out.
# serve's gunicorn worker class gives a thread only to complete requests, so slow or idle
# clients hold none (tests/e2e/test_slow_clients.py runs this very CMD with serve's
# defaults). Keep it `remediator serve`: a plain `gunicorn` command line would lose that.
CMD ["remediator", "serve", "--bind", "0.0.0.0:9095"]
