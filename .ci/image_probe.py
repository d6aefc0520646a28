"""HTTP probes for .ci/image, run in the containers' network namespace with the project's venv.

image_probe.py ready URL [TOKEN]  wait (at most 60 s) until URL answers 200 (to Bearer TOKEN)
image_probe.py scim BASE TOKEN    one SCIM create and query, which must reach the fake Modyo
image_probe.py calls MODYO TOKEN  print the fake Modyo's call counters (its control plane
                                  takes the fake's token)
"""

from __future__ import annotations

import sys
import time

import httpx

READY_SECONDS = 60.0


def ready(url: str, token: str | None = None) -> None:
    deadline = time.monotonic() + READY_SECONDS
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while True:
        try:
            if httpx.get(url, headers=headers, timeout=2, trust_env=False).status_code == 200:
                print(f"ready: GET {url} answered 200")
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"not ready: GET {url} did not answer 200 in {READY_SECONDS:.0f} s")
        time.sleep(0.2)


def scim(base: str, token: str) -> None:
    """Entra's first two requests for a new user: a create, then the query by userName."""
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
        anonymous = client.get("/Users")
        _expect(anonymous, 401, "GET /Users without a token")
        client.headers["Authorization"] = f"Bearer {token}"
        user = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "image.check@contoso.com",
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": "image.check@contoso.com"}],
            "name": {"givenName": "Image", "familyName": "Check"},
        }
        created = client.post("/Users", json=user)
        _expect(created, 201, "POST /Users")
        found = client.get("/Users", params={"filter": 'userName eq "image.check@contoso.com"'})
        _expect(found, 200, "GET /Users?filter=userName eq")
        resources = found.json()["Resources"]
        if [resource["id"] for resource in resources] != [created.json()["id"]]:
            raise SystemExit(f"the query did not find the created user: {found.text}")
    print(f"scim: POST /Users 201 (id {created.json()['id']}), the userName query finds it")


def calls(modyo: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.get(f"{modyo}/__fake__/calls", headers=headers, timeout=5, trust_env=False)
    _expect(answer, 200, "GET /__fake__/calls")
    print(f"fake Modyo calls: {answer.json()['calls']}")


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise SystemExit(f"{what}: expected {status}, got {response.status_code}: {response.text}")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"ready": ready, "scim": scim, "calls": calls}[command](*arguments)
