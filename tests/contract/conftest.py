import pytest


@pytest.fixture
def served_schema(client, db):
    """The OpenAPI document /api/schema/ serves, as JSON."""
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()
