#!/usr/bin/env python3
"""Regenerate events/stateless/*.json (standard library only, deterministic).

The four RAG routes (`rag_*.json`) are dashboard requests with the dashboard events' Bearer token
(`event` from gen_dashboard_events.py), naming CONVERSATION_ID and its segment SEGMENT_ID (the
first `conversation_segment` of a fresh store). To replay them the function needs
DIRECTUS_SECRET=events-directus-secret, that conversation and segment in a project owned by the
token's user, and LIGHTRAG_SERVER_URL (without it every RAG route answers the documented 503).

`webhook_transcribe.json` is RunPod calling the webhook URL echo-lambda registered with a job:
POST /api/stateless/webhook/transcribe?token=<RUNPOD_WEBHOOK_SECRET>, body = the job's status
object. RunPod cannot send custom headers, so the secret travels in the query (D21). The event has
the REST API proxy shape of the other events (`proxy_event` from gen_upload_chunk.py), without the
browser headers; the User-Agent is illustrative.

    python3 events/gen_stateless_events.py
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep events/ free of __pycache__
sys.path.insert(0, HERE)

from gen_dashboard_events import event  # noqa: E402
from gen_upload_chunk import CHUNK_ID, CONVERSATION_ID, proxy_event, write_event  # noqa: E402

# The secret the tests (and `cargo lambda watch`) must configure as RUNPOD_WEBHOOK_SECRET.
WEBHOOK_SECRET = "events-webhook-secret"
STATELESS_RESOURCE = "/api/stateless/{proxy+}"
# The job the chunk's runpod_job_status_link must end in for the result to be taken.
JOB_ID = "job-1"
EPOCH_MS = 1760623200000  # 16/Oct/2025:14:00:00 +0000

PAYLOAD = {
    "delayTime": 812,
    "executionTime": 4150,
    "id": JOB_ID,
    "output": {
        "conversation_chunk_id": CHUNK_ID,
        "joined_text": "We talked about the park.",
        "translation_text": "",
        "translation_error": False,
        "language": "en",
        "detected_language": "en",
        "detected_language_confidence": 0.98,
        "segments": [{"start": 0.0, "end": 1.9, "text": "We talked about the park."}],
    },
    "status": "COMPLETED",
}


def webhook_event():
    body = json.dumps(PAYLOAD, separators=(",", ":"))
    ev = proxy_event(
        "stateless/webhook_transcribe",
        "POST",
        "/api/stateless/webhook/transcribe",
        STATELESS_RESOURCE,
        path_parameters={"proxy": "webhook/transcribe"},
        query={"token": WEBHOOK_SECRET},
        body=body,
        content_type="application/json",
        epoch_ms=EPOCH_MS,
    )
    headers = {k: v for k, v in ev["headers"].items() if k not in ("Origin", "Referer", "Accept-Language")}
    headers["Accept"] = "*/*"
    headers["User-Agent"] = "RunPod-Webhook/1.0"
    ev["headers"] = headers
    ev["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    ev["requestContext"]["identity"]["userAgent"] = headers["User-Agent"]
    return ev


# The segment the RAG events name: the first row of a fresh store.
SEGMENT_ID = "1"
RAG_EPOCH_MS = 1760630400000  # 16/Oct/2025:16:00:00 +0000


def rag_events():
    # (file, path after /api/stateless/ = pathParameters.proxy, body)
    return [
        (
            "rag_insert",
            "rag/insert",
            {
                "content": "We talked about the park.",
                "transcripts": ["We talked about the park."],
                "echo_segment_id": SEGMENT_ID,
            },
        ),
        (
            "rag_simple_query",
            "rag/simple_query",
            {"query": "What did people say about the park?", "echo_segment_ids": [SEGMENT_ID], "get_transcripts": True},
        ),
        (
            "rag_get_lightrag_prompt",
            "rag/get_lightrag_prompt",
            {
                "query": "What did people say about the park?",
                "conversation_history": [
                    {"role": "user", "content": "Summarise the conversation."},
                    {"role": "assistant", "content": "It was about the park."},
                ],
                "echo_conversation_ids": [CONVERSATION_ID],
                "auto_select_bool": False,
                "top_k": 60,
            },
        ),
        ("rag_delete_conversation", "rag/delete_conversation", {"conversation_ids": [CONVERSATION_ID]}),
    ]


def main():
    print(write_event("stateless/webhook_transcribe.json", webhook_event()))
    epoch = RAG_EPOCH_MS
    for file, proxy, body in rag_events():
        name = f"stateless/{file}"
        path = f"/api/stateless/{proxy}"
        print(write_event(f"{name}.json", event(name, "POST", path, STATELESS_RESOURCE, proxy=proxy, body=body, epoch_ms=epoch)))
        epoch += 1000


if __name__ == "__main__":
    main()
