"""Ray Serve: the GLAN loop (L-RTG -> DT -> HRM) as composed deployments behind a FastAPI ingress.

``app.build_app(args)`` is the import path for ``serve run serve/config.yaml`` and ``serve deploy``;
it serves the app spec the DT export records. Nothing here starts Serve at import time.
``ingress`` (the endpoints and the day/event rules), ``routes`` (the FastAPI app of a spec, made
in each ingress replica), ``bodies`` (the PLPM app's strict, bounded HTTP bodies),
``app_bodies`` (any spec's bodies: the PLPM app's, or generated from the spec), ``features``
(the observation built on the server with the spec's ``build_obs``, and the models' columns),
``http`` (body limit, API key, 422/503 bodies), ``batching`` (per-request isolation inside a
batch), ``state`` (SQLite or Redis, compare-and-set), ``docs`` (offline Swagger UI, OpenAPI
links), ``deployments`` (one deployment per model).
"""
