#!/usr/bin/env python3
"""Regenerate events/conversations/*.json, events/projects/*.json and events/chats/*.json
(standard library only).

Each file is an API Gateway REST API proxy event (payload format 1.0), built by
`proxy_event` from gen_upload_chunk.py, so it has exactly the shape of the
participant events. The API's resources for these groups are
`/api/conversations/{proxy+}`, `/api/projects/{proxy+}`, `/api/projects` and
`/api/chats/{proxy+}` (all ANY); `resource`, `requestContext.resourcePath` and `pathParameters`
follow the resource API Gateway matches.

POST /api/projects/ (trailing slash) is matched by the `/api/projects`
resource, not by `/api/projects/{proxy+}`: a REST API ignores one trailing
slash when it matches resources, and a greedy `{proxy+}` needs at least one
character after its parent path. The slash is kept in `path` and
`requestContext.path`, which is what lets the function answer the 307.

Dashboard routes carry `Authorization: Bearer <JWT>`: an HS256 token signed
with DIRECTUS_SECRET, shaped like the access tokens Directus issues (compact
JSON, base64url without padding). The token and every other value are fixed,
so the output is byte-for-byte reproducible:

    python3 events/gen_dashboard_events.py
"""

import base64
import hashlib
import hmac
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep events/ free of __pycache__
sys.path.insert(0, HERE)

from gen_upload_chunk import (  # noqa: E402
    CHUNK_ID,
    CONVERSATION_ID,
    PROJECT_ID,
    proxy_event,
    write_event,
)

# The secret the tests (and `cargo lambda watch`) must configure as DIRECTUS_SECRET.
DIRECTUS_SECRET = "events-directus-secret"
# The dashboard user the token names; tests make it the owner of PROJECT_ID
# (project.directus_user_id), so every ownership check passes without admin_access.
OWNER_USER_ID = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
OWNER_ROLE_ID = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"

JWT_HEADER = {"alg": "HS256", "typ": "JWT"}
JWT_CLAIMS = {
    "id": OWNER_USER_ID,
    "role": OWNER_ROLE_ID,
    "app_access": True,
    "admin_access": False,
    "iat": 1760000000,  # 2025-10-09T08:53:20Z
    "exp": 4102444800,  # 2100-01-01T00:00:00Z
    "iss": "directus",
}

DASHBOARD_ORIGIN = "http://localhost:3000"
PORTAL_ORIGIN = "http://localhost:3001"

CONVERSATIONS_RESOURCE = "/api/conversations/{proxy+}"
PROJECTS_PROXY_RESOURCE = "/api/projects/{proxy+}"
PROJECTS_RESOURCE = "/api/projects"
CHATS_RESOURCE = "/api/chats/{proxy+}"

# The chat the chat events name; tests create it in PROJECT_ID with CONVERSATION_ID as context.
CHAT_ID = "66666666-6666-4666-8666-666666666666"

# Dashboard events are timed an hour after the participant ones (12:00 UTC).
FIRST_EPOCH_MS = 1760619600000  # 16/Oct/2025:13:00:00 +0000


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value):
    # What JSON.stringify (jsonwebtoken, used by Directus) writes: no spaces, keys in order.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_hs256(header, claims, secret):
    signing_input = b64url(compact_json(header)) + "." + b64url(compact_json(claims))
    signature = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def verify_hs256(token, secret):
    """Return the claims of a valid HS256 token, or raise ValueError."""
    head, payload, signature = token.split(".")
    if json.loads(b64url_decode(head)) != JWT_HEADER:
        raise ValueError("unexpected JOSE header")
    expected = hmac.new(secret.encode("utf-8"), f"{head}.{payload}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, b64url_decode(signature)):
        raise ValueError("bad signature")
    return json.loads(b64url_decode(payload))


TOKEN = sign_hs256(JWT_HEADER, JWT_CLAIMS, DIRECTUS_SECRET)


def event(name, method, path, resource, *, proxy=None, query=None, body=None, public=False, accept=None, epoch_ms):
    """One event. `proxy` fills pathParameters (None: the resource has no parameters).

    Dashboard routes come from the dashboard origin with the Bearer token;
    public routes (get-reply, health stream) come from the portal origin
    without one. `body` is a dict sent as compact JSON with Content-Type
    application/json, as axios and fetch send it.
    """
    ev = proxy_event(
        name,
        method,
        path,
        resource,
        path_parameters=None if proxy is None else {"proxy": proxy},
        query=query,
        body=None if body is None else compact_json(body).decode("utf-8"),
        content_type=None if body is None else "application/json",
        epoch_ms=epoch_ms,
    )
    headers = dict(ev["headers"])
    origin = PORTAL_ORIGIN if public else DASHBOARD_ORIGIN
    headers["Origin"] = origin
    headers["Referer"] = origin + "/"
    if accept is not None:
        headers["Accept"] = accept
    if not public:
        headers["Authorization"] = "Bearer " + TOKEN
    headers = dict(sorted(headers.items(), key=lambda kv: kv[0].lower()))
    ev["headers"] = headers
    ev["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    return ev


def conversation_events():
    cid = CONVERSATION_ID
    # (file, method, path after /api/conversations/ = pathParameters.proxy, options)
    return [
        ("counts", "GET", f"{cid}/counts", {}),
        ("content", "GET", f"{cid}/content", {"query": {"return_url": "true"}}),
        ("chunk-content", "GET", f"{cid}/chunks/{CHUNK_ID}/content", {"query": {"return_url": "true"}}),
        ("transcript", "GET", f"{cid}/transcript", {}),
        ("token-count", "GET", f"{cid}/token-count", {}),
        # The portal's get-reply call: fetch() from the AI SDK, public.
        ("get-reply", "POST", f"{cid}/get-reply", {"body": {"language": "en"}, "public": True, "accept": "*/*"}),
        ("summarize", "POST", f"{cid}/summarize", {}),
        (
            "retranscribe",
            "POST",
            f"{cid}/retranscribe",
            {"body": {"new_conversation_name": "", "use_pii_redaction": False}},
        ),
        ("delete-conversation", "DELETE", cid, {}),
        # The portal's EventSource: public; the literal route wins over /{cid}/... in the router.
        (
            "health-stream",
            "GET",
            "health/stream",
            {"query": {"conversation_ids": cid}, "public": True, "accept": "text/event-stream"},
        ),
    ]


def project_events():
    pid = PROJECT_ID
    create = {"name": "Town hall 2025", "language": "nl", "context": "Budget priorities"}
    return [
        # (file, method, path, resource, proxy, options)
        ("create-project", "POST", "/api/projects", PROJECTS_RESOURCE, None, {"body": create}),
        # Matched by /api/projects (not {proxy+}); the slash stays in the path (see module doc).
        ("create-project-trailing-slash", "POST", "/api/projects/", PROJECTS_RESOURCE, None, {"body": create}),
        ("transcripts", "GET", f"/api/projects/{pid}/transcripts", PROJECTS_PROXY_RESOURCE, f"{pid}/transcripts", {}),
        (
            "create-library",
            "POST",
            f"/api/projects/{pid}/create-library",
            PROJECTS_PROXY_RESOURCE,
            f"{pid}/create-library",
            {"body": {"language": "en"}},
        ),
        (
            "create-view",
            "POST",
            f"/api/projects/{pid}/create-view",
            PROJECTS_PROXY_RESOURCE,
            f"{pid}/create-view",
            {"body": {"query": "What do people say about parking?", "additional_context": "", "language": "en"}},
        ),
        (
            "create-report",
            "POST",
            f"/api/projects/{pid}/create-report",
            PROJECTS_PROXY_RESOURCE,
            f"{pid}/create-report",
            {"body": {"language": "en"}},
        ),
        (
            "clone",
            "POST",
            f"/api/projects/{pid}/clone",
            PROJECTS_PROXY_RESOURCE,
            f"{pid}/clone",
            {"body": {"name": "Town hall (copy)", "language": "en"}},
        ),
    ]


def chat_events():
    chat = CHAT_ID
    question = {"messages": [{"role": "user", "content": "What do people say about the park?"}]}
    # (file, method, path after /api/chats/ = pathParameters.proxy, options)
    return [
        ("context", "GET", f"{chat}/context", {}),
        ("add-context", "POST", f"{chat}/add-context", {"body": {"conversation_id": CONVERSATION_ID}}),
        ("delete-context", "POST", f"{chat}/delete-context", {"body": {"auto_select_bool": False}}),
        ("lock-conversations", "POST", f"{chat}/lock-conversations", {}),
        # useChat's fetch: the data stream protocol, the answer language in the query.
        ("chat", "POST", chat, {"query": {"language": "en"}, "body": question, "accept": "*/*"}),
    ]


def main():
    claims = verify_hs256(TOKEN, DIRECTUS_SECRET)
    assert claims == JWT_CLAIMS, claims

    epoch = FIRST_EPOCH_MS
    written = []
    for file, method, proxy, opts in conversation_events():
        name = f"conversations/{file}"
        path = f"/api/conversations/{proxy}"
        written.append(
            write_event(f"{name}.json", event(name, method, path, CONVERSATIONS_RESOURCE, proxy=proxy, epoch_ms=epoch, **opts))
        )
        epoch += 1000
    for file, method, path, resource, proxy, opts in project_events():
        name = f"projects/{file}"
        written.append(write_event(f"{name}.json", event(name, method, path, resource, proxy=proxy, epoch_ms=epoch, **opts)))
        epoch += 1000
    for file, method, proxy, opts in chat_events():
        name = f"chats/{file}"
        path = f"/api/chats/{proxy}"
        written.append(write_event(f"{name}.json", event(name, method, path, CHATS_RESOURCE, proxy=proxy, epoch_ms=epoch, **opts)))
        epoch += 1000
    for out in written:
        print(out)
    print("token:", TOKEN)


if __name__ == "__main__":
    main()
