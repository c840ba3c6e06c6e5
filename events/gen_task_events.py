#!/usr/bin/env python3
"""Writes events/tasks/*.json (SQS events carrying one Task message each, as the workers'
event source mappings deliver them) and events/scheduler/*.json (what the EventBridge schedules
send). Standard library only; deterministic output."""

import hashlib
import json
import pathlib

HERE = pathlib.Path(__file__).parent
PROJECT = "11111111-1111-4111-8111-111111111111"
CONVERSATION = "33333333-3333-4333-8333-333333333333"
CHUNK = "44444444-4444-4444-8444-444444444444"
RUN = "66666666-6666-4666-8666-666666666666"
ACCOUNT = "123456789012"
REGION = "eu-west-1"

TASKS = {
    "process-conversation-chunk": ("audio", "task_process_conversation_chunk", {"chunk_id": CHUNK}),
    "merge-conversation-chunks": ("audio", "task_merge_conversation_chunks", {"conversation_id": CONVERSATION}),
    "transcribe-chunk": ("network", "task_transcribe_chunk", {"conversation_chunk_id": CHUNK, "conversation_id": CONVERSATION}),
    "finish-conversation-hook": ("network", "task_finish_conversation_hook", {"conversation_id": CONVERSATION}),
    "summarize-conversation": ("network", "task_summarize_conversation", {"conversation_id": CONVERSATION}),
    "run-etl-pipeline": ("network", "task_run_etl_pipeline", {"conversation_id": CONVERSATION}),
    "collect-and-finish-unfinished-conversations": ("network", "task_collect_and_finish_unfinished_conversations", {}),
    "create-project-library": ("network", "task_create_project_library", {"project_id": PROJECT, "language": "en", "project_analysis_run_id": RUN}),
    "create-view": (
        "network",
        "task_create_view",
        {"project_analysis_run_id": RUN, "user_query": "What do people say about parking?", "user_query_context": "", "language": "en"},
    ),
    "update-runpod-transcription-response": ("network", "task_update_runpod_transcription_response", {}),
    "process-runpod-chunk-response": (
        "network",
        "task_process_runpod_chunk_response",
        {"chunk_id": CHUNK, "status_link": "https://api.runpod.ai/v2/whisper/status/job-1"},
    ),
    "get-runpod-diarization": ("network", "task_get_runpod_diarization", {"chunk_id": CHUNK}),
    "delete-conversation-artifacts": ("network", "task_delete_conversation_artifacts", {"conversation_id": CONVERSATION, "segment_ids": []}),
    "delete-storage-objects": (
        "network",
        "task_delete_storage_objects",
        {"keys": [], "prefixes": [f"conversation/{CONVERSATION}/chunks/{CHUNK}-"], "chunk_id": CHUNK},
    ),
}


def message(task, args):
    return json.dumps({"task": task, "version": 1, "args": args, "sent_at": "2025-10-16T12:00:00Z"}, separators=(",", ":"))


def sqs_event(name, queue, task, args):
    body = message(task, args)
    digest = hashlib.md5(body.encode()).hexdigest()
    return {
        "Records": [
            {
                "messageId": f"0e9c6f4a-{digest[:4]}-4a3b-9c1d-{digest[4:16]}",
                "receiptHandle": f"AQEB{digest}{name}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1760616000000",
                    "SenderId": "AROAEXAMPLE:echo-lambda",
                    "ApproximateFirstReceiveTimestamp": "1760616000100",
                },
                "messageAttributes": {"task": {"stringValue": task, "stringListValues": [], "binaryListValues": [], "dataType": "String"}},
                "md5OfBody": digest,
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:echo-lambda-{queue}",
                "awsRegion": REGION,
            }
        ]
    }


def write(path, value):
    path.write_text(json.dumps(value, indent=2) + "\n")


for name, (queue, task, args) in TASKS.items():
    write(HERE / "tasks" / f"{name}.json", sqs_event(name, queue, task, args))

# A schedule's constant input is the message itself (template.yaml); a rule without one sends
# EventBridge's own scheduled event, which the scheduler reads as the collector.
write(HERE / "scheduler" / "collector.json", json.loads(message("task_collect_and_finish_unfinished_conversations", {})))
write(HERE / "scheduler" / "runpod-poller.json", json.loads(message("task_update_runpod_transcription_response", {})))
write(
    HERE / "scheduler" / "scheduled-event.json",
    {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2025-10-16T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/echo-lambda-collector"],
        "detail": {},
    },
)
