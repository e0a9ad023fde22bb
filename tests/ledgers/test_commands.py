from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ledgers.models import ApiKey
from tests.conftest import Api

pytestmark = pytest.mark.django_db


def test_create_api_key_prints_raw_key_last_and_it_works():
    out = StringIO()
    call_command("create_api_key", "--name", "svc", "--scopes", "read", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(name="svc")
    assert key.scopes == ["read"]
    assert Api(raw).get("/v1/customers").status_code == 200
    assert Api(raw).post("/v1/customers", {"name": "x", "email": "x@example.com"}
                         ).status_code == 403


def test_create_api_key_defaults_to_all_scopes():
    call_command("create_api_key", "--name", "all", stdout=StringIO())
    assert ApiKey.objects.get(name="all").scopes == ["ingest", "read", "write"]


def test_create_api_key_rejects_unknown_scope():
    with pytest.raises(CommandError, match="Unknown scopes: admin"):
        call_command("create_api_key", "--name", "bad", "--scopes", "read,admin")
    assert not ApiKey.objects.exists()


def test_bootstrap_is_idempotent(tmp_path, settings):
    settings.LOCAL_DIR = tmp_path
    first, second = StringIO(), StringIO()
    call_command("bootstrap", stdout=first)
    call_command("bootstrap", stdout=second)
    lines = lambda out: [ln for ln in out.getvalue().splitlines() if ":" in ln]  # noqa: E731
    assert lines(first)[-2:] == lines(second)[-2:]  # same admin password and API key
    raw = second.getvalue().strip().splitlines()[-1].split()[-1]
    assert Api(raw).get("/v1/customers/external_customer_id/acme").status_code == 200
