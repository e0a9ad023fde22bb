import json
from io import StringIO
from pathlib import Path

from django.core.management import call_command

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_committed_schema_matches_code_and_generates_without_warnings():
    """Regenerate with `make schema` when the API changes."""
    out = StringIO()
    call_command("spectacular", "--format", "openapi-json", "--validate", "--fail-on-warn",
                 stdout=out)
    generated = json.loads(out.getvalue())
    committed = json.loads(SCHEMA_FILE.read_text())
    assert generated == committed, "docs/openapi.json is stale: run `make schema`"
    for path, operations in generated["paths"].items():
        for method, operation in operations.items():
            assert operation.get("responses"), f"{method} {path} documents no responses"
