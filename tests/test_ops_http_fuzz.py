"""Schemathesis against a real shard's OpenAPI schema: generated (and invalid) requests to every route, as a viewer
and as an admin; no 500, every status documented, results as described; the shard is still alive and ticking.
Bounded: a few dozen examples per route, so it runs in seconds."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from ops_shard import ADMIN, VIEWER, Served, no_proxy, start_shard

no_proxy()


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_shard(tmp_path_factory.mktemp("fuzz"), tick_rate=50)
    yield served
    tick = served.wait_ticks(2)  # still alive and ticking after the fuzz
    assert tick > 0
    code, err = served.stop()
    assert code == 0, err
    assert "Traceback" not in err, err


def _fuzz(shard: Served, token: str) -> Counter[int]:
    """Every operation of the served schema, valid and invalid generated cases; the HTTP statuses seen."""
    api = schemathesis.openapi.from_url(f"{shard.url}/openapi.json")
    seen: Counter[int] = Counter()
    for found, mode in itertools.product(list(api.get_all_operations()), GenerationMode):
        operation = found.ok()
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to get wrong in a GET without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=40 if operation.method.upper() == "POST" else 5,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"},
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
                timeout=60,
            )
            seen[response.status_code] += 1

        check()
    return seen


def test_generated_requests_as_a_viewer(shard: Served) -> None:
    seen = _fuzz(shard, VIEWER)
    assert seen[200] and seen[400] and seen[403], seen  # reads answered, bad bodies and admin commands refused


def test_generated_requests_as_an_admin(shard: Served) -> None:
    seen = _fuzz(shard, ADMIN)
    assert seen[200] and seen[400], seen
