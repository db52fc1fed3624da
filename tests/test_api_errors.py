"""Contract edges of the REST surface: the seed's error body for every error, doubled
slashes, bare Authorization values, authentication before validation."""

from __future__ import annotations

import json

import httpx

from api.app import create_app

HELLO = {"task_name": "hello", "name": "edge"}


def assert_error_body(response: httpx.Response, status_code: int, name: str) -> None:
    assert response.status_code == status_code, response.text
    body = response.json()
    assert body["status"] == "error" and [e["name"] for e in body["errors"]] == [name], body
    assert set(body["errors"][0]) == {"name", "location", "description"}


def test_unknown_route_and_wrong_method_answer_the_seed_error_body(service):
    assert_error_body(service.http.get("/v2/nothing-here"), 404, "path")
    assert_error_body(service.http.post("/storage/nowhere/x.jpg"), 405, "method")
    wrong = service.http.get("/v2/create")
    assert_error_body(wrong, 405, "method")
    assert wrong.headers["allow"] == "POST"
    assert_error_body(service.http.get("/storage/nowhere/x.jpg"), 404, "path")


async def test_request_validation_answers_400_with_the_seed_error_body():
    """FastAPI's own validation (422 and ``{"detail": [...]}`` by default)."""
    app = create_app()

    @app.get("/typed")
    async def typed(count: int) -> int:
        return count

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        response = await client.get("/typed", params={"count": "many"})
    assert_error_body(response, 400, "count")
    assert response.json()["errors"][0]["location"] == "query"


def test_doubled_slashes_are_served(service):
    secret = service.account["secret"]
    created = httpx.post(service.api + "//v2/create", json={"secret": secret, "tasks": HELLO, "block": True})
    assert created.status_code == 200, created.text
    status = created.json()[0]
    assert status["result"] == "Hello edge"
    again = httpx.get(service.api + "/v2//status", params={"tasks": status["key"], "secret": secret})
    assert again.status_code == 200 and again.json()[0]["result"] == "Hello edge"


def test_bare_authorization_secret_and_api_key(service):
    response = service.http.post(
        "/v2/create", json={"tasks": HELLO, "block": True}, headers={"Authorization": service.account["secret"]}
    )
    assert response.status_code == 200, response.text
    key = response.json()[0]["key"]
    webapp = json.loads(service.cli("account", "create", "bare-key", "--referrer", "https://bare.example").stdout)
    by_key = service.http.get(
        "/v2/status", params={"tasks": key},
        headers={"Authorization": webapp["api_key"], "Referer": "https://bare.example/app"},
    )
    assert by_key.status_code == 200 and by_key.json()[0]["error"] == "unknown task key"  # not its task
    no_referer = service.http.get("/v2/status", params={"tasks": key}, headers={"Authorization": webapp["api_key"]})
    assert no_referer.status_code == 401 and "Referer" in no_referer.json()["errors"][0]["description"]
    wrong = service.http.post("/v2/create", json={"tasks": HELLO}, headers={"Authorization": "nope"})
    assert_error_body(wrong, 401, "secret")


def test_secret_scheme_on_get_status(service):
    key = service.run(HELLO)["key"]
    response = service.http.get(
        "/v2/status", params={"tasks": key}, headers={"Authorization": f"Secret {service.account['secret']}"}
    )
    assert response.status_code == 200 and response.json()[0]["result"] == "Hello edge"


def test_create_file_and_file_authenticate_before_validating(service):
    assert_error_body(service.http.get("/v1/create_file/x.jpg", params={"width": 5}), 401, "secret")
    assert_error_body(service.http.post("/v1/create_file", json={}), 401, "secret")
    assert_error_body(service.http.get("/v1/file"), 401, "secret")
    secret = service.account["secret"]
    assert_error_body(service.http.post("/v1/create_file", json={"secret": secret}), 400, "task")


async def test_openapi_shows_every_tasks_parameters():
    """/docs: the create body is a union of the registry's parameter models on task_name."""
    from flows.registry import TASKS

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="http://api") as client:
        document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for path in ("/v1/create", "/v2/create", "/v2/create_stream"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/CreateRequest"}
    one, many = schemas["CreateRequest"]["properties"]["tasks"]["anyOf"]
    assert many["items"] == one
    mapping = one["discriminator"]["mapping"]
    assert set(mapping) == set(TASKS)
    for name, spec in TASKS.items():
        task = schemas[mapping[name].rsplit("/", 1)[1]]
        assert task["properties"]["task_name"]["const"] == name
        assert set(spec.params.model_fields) <= set(task["properties"])
