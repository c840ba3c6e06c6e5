#!/usr/bin/env python3
"""Regenerate events/resources/*.json (standard library only, deterministic).

The four legacy resource routes (spec/api.md §2.7) as the REST API's
`/api/resources/{proxy+}` resource hands them to the `resources` function:
dashboard requests from the dashboard origin with the same Bearer token as the
other dashboard events (`event` from gen_dashboard_events.py). To replay them
the function needs DIRECTUS_SECRET=events-directus-secret, a DATABASE_URL whose
`document` table has a row RESOURCE_ID in PROJECT_ID (owned by OWNER_USER_ID),
and, for the content event, a PDF object at that row's `path` with type "PDF".

    python3 events/gen_resources_events.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep events/ free of __pycache__
sys.path.insert(0, HERE)

from gen_dashboard_events import event  # noqa: E402
from gen_upload_chunk import write_event  # noqa: E402

RESOURCE_ID = "66666666-6666-4666-8666-666666666666"
RESOURCES_RESOURCE = "/api/resources/{proxy+}"
FIRST_EPOCH_MS = 1760626800000  # 16/Oct/2025:15:00:00 +0000


def resource_events():
    rid = RESOURCE_ID
    # (file, method, path after /api/resources/ = pathParameters.proxy, options)
    return [
        ("get-resource", "GET", rid, {}),
        ("resource-content", "GET", f"{rid}/content", {}),
        # null and "" keep the stored description and context; the title changes.
        ("update-resource", "PUT", rid, {"body": {"title": "Budget 2025 (annotated)", "description": None, "context": ""}}),
        ("delete-resource", "DELETE", rid, {}),
    ]


def main():
    epoch = FIRST_EPOCH_MS
    for file, method, proxy, opts in resource_events():
        name = f"resources/{file}"
        path = f"/api/resources/{proxy}"
        print(write_event(f"{name}.json", event(name, method, path, RESOURCES_RESOURCE, proxy=proxy, epoch_ms=epoch, **opts)))
        epoch += 1000


if __name__ == "__main__":
    main()
