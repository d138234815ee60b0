"""Ray Serve: the GLAN loop (L-RTG -> DT -> HRM) as composed deployments behind a FastAPI ingress.

``app.build_app(args)`` is the import path for ``serve run serve/config.yaml`` and ``serve deploy``.
Nothing here starts Serve at import time.
"""
