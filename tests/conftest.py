import json
import os

import pytest
from django.test import Client
from hypothesis import settings as hypothesis_settings

from ledgers.services import api_key_create

# CI explores the same examples on every run, so a red build is reproducible.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


class Api:
    """A JSON client for /v1 with an API key: api.post(path, body) -> response (.json())."""

    def __init__(self, raw_key: str | None):
        self.client = Client()
        self.raw_key = raw_key

    def _headers(self, headers):
        result = {}
        if self.raw_key:
            result["HTTP_AUTHORIZATION"] = f"Bearer {self.raw_key}"
        for name, value in (headers or {}).items():
            result["HTTP_" + name.upper().replace("-", "_")] = value
        return result

    def get(self, path, params=None, headers=None):
        return self.client.get(path, params or {}, **self._headers(headers))

    def _send(self, method, path, body, headers, raw):
        payload = raw if raw is not None else json.dumps(body if body is not None else {})
        return getattr(self.client, method)(path, payload, content_type="application/json",
                                            **self._headers(headers))

    def post(self, path, body=None, headers=None, raw=None):
        return self._send("post", path, body, headers, raw)

    def put(self, path, body=None, headers=None, raw=None):
        return self._send("put", path, body, headers, raw)

    def delete(self, path, headers=None):
        return self.client.delete(path, **self._headers(headers))


@pytest.fixture
def api_key(db):
    key, raw = api_key_create(name="test")
    key.raw = raw
    return key


@pytest.fixture
def api(api_key):
    return Api(api_key.raw)


@pytest.fixture
def api_with_scopes(db):
    def make(*scopes):
        _, raw = api_key_create(name="scoped", scopes=list(scopes))
        return Api(raw)

    return make


@pytest.fixture
def anonymous_api(db):
    return Api(None)


def assert_problem(response, status, code=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail", "validation_errors"} <= set(body)
    if code is not None:
        assert body["code"] == code, body
    return body
