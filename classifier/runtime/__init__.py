"""The model side: artifacts (model folders), engines, preprocessing, batching and the registry.

No Django request object enters here; the API (``classifier.api``, through ``classifier.services``)
calls ``registry.get(name)``, the slot's batcher and ``registry.describe()``.
"""
