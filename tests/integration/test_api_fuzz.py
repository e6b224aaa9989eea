"""Schemathesis fuzzes every /v1 operation from the OpenAPI document: no input may produce a 500.

Bounded and derandomised (a fixed number of examples per operation) so CI is
repeatable. Runs the generated cases through hypothesis directly rather than
schemathesis' pytest plugin, which does not load under pytest 9.
"""
import schemathesis
from hypothesis import HealthCheck, given, settings

from app.api.keys import create_api_key
from app.api.scopes import ALL_SCOPES
from tests.factories import make_recipient

EXAMPLES_PER_OPERATION = 20


def test_no_generated_request_makes_a_server_error(app):
    make_recipient(external_id="fuzz-user", email="fuzz@example.com")
    key = create_api_key("fuzz", scopes=ALL_SCOPES)[1]
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    server_errors = []

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            if response.status_code >= 500:
                server_errors.append((case.method, case.formatted_path, case.body, response.status_code))

        check()
    assert server_errors == []
