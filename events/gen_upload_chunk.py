#!/usr/bin/env python3
"""Regenerate events/participant/upload-chunk.json (standard library only).

The event is an API Gateway REST API proxy event (payload format 1.0) for
POST /api/participant/conversations/{CONVERSATION_ID}/upload-chunk with a
multipart/form-data body. The REST API lists multipart/form-data as a binary
media type, so API Gateway hands the body over base64-encoded with
isBase64Encoded = true; this file does the same.

The multipart body carries the fields `timestamp`, `source` and the file part
`chunk`: a real WAV (0.5 s, 8 kHz, mono, 16-bit PCM, 440 Hz sine) built with
the `wave` module. Everything is fixed (boundary, ids, request time), so the
output is byte-for-byte reproducible:

    python3 events/gen_upload_chunk.py
"""

import base64
import io
import json
import math
import os
import uuid
import wave
from datetime import datetime, timezone

PROJECT_ID = "11111111-1111-4111-8111-111111111111"
TAG_ID = "22222222-2222-4222-8222-222222222222"
CONVERSATION_ID = "33333333-3333-4333-8333-333333333333"
CHUNK_ID = "44444444-4444-4444-8444-444444444444"
UNSUBSCRIBE_TOKEN = "55555555-5555-4555-8555-555555555555"

# A made-up REST API in eu-west-1 (regional endpoint: no CloudFront headers).
API_ID = "abc123defg"
REGION = "eu-west-1"
STAGE = "Prod"
HOST = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
ACCOUNT_ID = "123456789012"
SOURCE_IP = "203.0.113.10"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36"
)
ORIGIN = "http://localhost:3001"

BOUNDARY = "----WebKitFormBoundaryEchoLambda7MA4YWxk"
CHUNK_FILENAME = "chunk-1760616030000.wav"
CHUNK_TIMESTAMP = "2025-10-16T12:00:30.000Z"

HERE = os.path.dirname(os.path.abspath(__file__))


def proxy_event(
    name,
    method,
    path,
    resource,
    path_parameters=None,
    query=None,
    body=None,
    content_type=None,
    is_base64=False,
    epoch_ms=1760616000000,
):
    """Build a REST API (v1) Lambda proxy event the way API Gateway sends it.

    `name` only seeds the deterministic request ids. `query` is a dict of
    single-valued query parameters (both query maps are filled from it).
    """
    headers = {
        "Accept": "application/json, text/plain, */*",
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Accept-Language": "en-GB,en;q=0.9",
        "Host": HOST,
        "Origin": ORIGIN,
        "Referer": ORIGIN + "/",
        "User-Agent": USER_AGENT,
        "X-Amzn-Trace-Id": "Root=1-68f0de00-" + uuid.uuid5(uuid.NAMESPACE_URL, "trace/" + name).hex[:24],
        "X-Forwarded-For": SOURCE_IP,
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers = dict(sorted(headers.items(), key=lambda kv: kv[0].lower()))

    request_time = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": uuid.uuid5(uuid.NAMESPACE_URL, "resource/" + resource).hex[:6],
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": base64.b64encode(
                uuid.uuid5(uuid.NAMESPACE_URL, "ext/" + name).bytes[:12]
            ).decode("ascii"),
            "requestTime": request_time.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            # On the execute-api host the context path carries the stage; the
            # top-level `path` does not.
            "path": f"/{STAGE}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": API_ID,
            "requestTimeEpoch": epoch_ms,
            "requestId": str(uuid.uuid5(uuid.NAMESPACE_URL, "request/" + name)),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": SOURCE_IP,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": USER_AGENT,
                "user": None,
            },
            "domainName": HOST,
            "apiId": API_ID,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def write_event(relpath, event):
    out = os.path.join(HERE, relpath)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(event, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return out


def sine_wav(seconds=0.5, rate=8000, freq=440.0, amplitude=0.5):
    """A mono 16-bit PCM WAV file, as bytes."""
    frames = int(seconds * rate)
    pcm = bytearray()
    for n in range(frames):
        sample = int(round(amplitude * 32767 * math.sin(2 * math.pi * freq * n / rate)))
        pcm += sample.to_bytes(2, "little", signed=True)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(pcm))
    return buf.getvalue()


def multipart_body(fields, files, boundary=BOUNDARY):
    """RFC 7578 body: `fields` = [(name, value)], `files` = [(name, filename, type, bytes)]."""
    out = bytearray()
    for name, value in fields:
        out += f"--{boundary}\r\n".encode()
        out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode("utf-8") + b"\r\n"
    for name, filename, ctype, data in files:
        out += f"--{boundary}\r\n".encode()
        out += f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
        out += f"Content-Type: {ctype}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def main():
    body = multipart_body(
        fields=[("timestamp", CHUNK_TIMESTAMP), ("source", "PORTAL_AUDIO")],
        files=[("chunk", CHUNK_FILENAME, "audio/wav", sine_wav())],
    )
    rest = f"conversations/{CONVERSATION_ID}/upload-chunk"
    event = proxy_event(
        "participant/upload-chunk",
        "POST",
        f"/api/participant/{rest}",
        "/api/participant/{proxy+}",
        path_parameters={"proxy": rest},
        body=base64.b64encode(body).decode("ascii"),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        is_base64=True,
        epoch_ms=1760616030500,
    )
    print(write_event("participant/upload-chunk.json", event), f"({len(body)} byte multipart body)")


if __name__ == "__main__":
    main()
