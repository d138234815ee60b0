"""Ray Serve: the GLAN loop (L-RTG -> DT -> HRM) as composed deployments behind a FastAPI ingress.

``app.build_app(args)`` is the import path for ``serve run serve/config.yaml`` and ``serve deploy``.
Nothing here starts Serve at import time. ``ingress`` (the endpoints and the day/event rules),
``schemas`` (the strict, bounded HTTP bodies), ``features`` (the observation built on the server
with the simulator's ``build_obs``), ``http`` (body limit, API key, 422/503 bodies), ``batching``
(per-request isolation inside a batch), ``state`` (SQLite or Redis, compare-and-set), ``docs``
(offline Swagger UI, OpenAPI links), ``models`` (one deployment per model).
"""
