"""The floor of webhook ingest: a bare Flask app that stores each notification with one
INSERT and one COMMIT on PostgreSQL, nothing else (no dedup, incident, timeline, audit).

    FLOOR_DSN=postgresql://... FLOOR_TOKEN=... gunicorn -w 2 -k gthread --threads 4 \
        --chdir bench 'floor_app:create_app()'

``bench/floor.py`` runs it next to ``remediator serve`` under the same load.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

import psycopg_pool
from flask import Flask, Response, request
from psycopg.types.json import Jsonb

SCHEMA = """CREATE TABLE IF NOT EXISTS floor_notifications (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    group_key text NOT NULL,
    alert_count integer NOT NULL,
    body jsonb NOT NULL)"""


def create_app() -> Flask:
    app = Flask("floor")
    token = os.environ["FLOOR_TOKEN"].encode()
    pool = psycopg_pool.ConnectionPool(os.environ["FLOOR_DSN"], min_size=1, max_size=4,
                                       open=True)

    @app.post("/api/v1/alerts")
    def alerts() -> Any:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token):
            return {"error": "unauthorized"}, 401
        body = json.loads(request.get_data())
        with pool.connection() as conn:  # one transaction: INSERT, COMMIT
            conn.execute(
                "INSERT INTO floor_notifications (group_key, alert_count, body)"
                " VALUES (%s, %s, %s)",
                (body.get("groupKey", ""), len(body.get("alerts", [])), Jsonb(body)),
            )
        return Response('{"status":"ok"}', status=200, mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Any:
        return {"status": "ok"}

    return app
