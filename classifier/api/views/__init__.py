"""The API's views, by audience: ``api_v1`` and ``api_v2`` for API consumers, ``ops`` for operators and their
probes (health, readiness, metrics). ``base`` holds what every endpoint shares. The browser pages live in
``classifier.pages``; the OpenAPI declarations in ``classifier.api.schema``."""
