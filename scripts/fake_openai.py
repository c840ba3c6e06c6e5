#!/usr/bin/env python3
"""A deterministic OpenAI-compatible LLM and embedding server for LightRAG's server in tests
(rag.md §4): entity extraction answers in LightRAG's delimiter format, keyword extraction in
JSON, embeddings are a hashed bag of words. Loopback only; no network, no model.

Usage: fake_openai.py PORT [DIM] [KEY]

Every request must carry `Authorization: Bearer KEY` (default `fake`), as the real API wants
its key; anything else gets OpenAI's 401.
"""

import base64
import hashlib
import json
import math
import re
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIM = int(sys.argv[2]) if len(sys.argv) > 2 else 256
KEY = sys.argv[3] if len(sys.argv) > 3 else "fake"
WORD = re.compile(r"[A-Za-z0-9]+")
STOP = {
    "this", "that", "with", "from", "have", "were", "what", "when", "which", "about", "their", "there",
    "they", "them", "then", "than", "into", "also", "will", "would", "should", "could", "does", "been",
    "being", "some", "more", "most", "other", "over", "only", "very", "just", "said", "says", "your",
}


def words(text):
    return [w for w in WORD.findall(text) if len(w) >= 4 and w.lower() not in STOP]


def embed(text):
    vector = [0.0] * DIM
    for word in WORD.findall(text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def extraction(user):
    """Up to five entities (distinct words, title case) with the sentence they occur in, and a
    relation between neighbours."""
    match = re.search(r"---Input Text---\n```\n(.*?)\n```", user, re.S)
    text = match.group(1) if match else user
    names, lines = [], []
    for word in words(text):
        name = word.capitalize()
        if name not in names:
            names.append(name)
        if len(names) == 5:
            break
    sentences = re.split(r"(?<=[.!?])\s+", text)
    for name in names:
        sentence = next((s for s in sentences if name.lower() in s.lower()), text[:200])
        description = " ".join(sentence.split())[:300]
        lines.append(f"entity<|#|>{name}<|#|>concept<|#|>{name} is mentioned: {description}")
    for a, b in zip(names, names[1:]):
        lines.append(f"relation<|#|>{a}<|#|>{b}<|#|>{a.lower()},{b.lower()}<|#|>{a} and {b} are mentioned together.")
    lines.append("<|COMPLETE|>")
    return "\n".join(lines)


def keywords(user):
    match = re.search(r"User Query:\s*(.*)", user)
    query = match.group(1) if match else user
    found = [w.lower() for w in words(query)]
    return json.dumps({"high_level_keywords": found[:2], "low_level_keywords": found})


def answer(body):
    messages = body.get("messages") or []
    user = "\n".join(m.get("content") or "" for m in messages if isinstance(m.get("content"), str))
    if "---Input Text---" in user:
        return extraction(user)
    if (body.get("response_format") or {}).get("type") == "json_object" or "User Query:" in user:
        return keywords(user)
    # Description summaries and answers: a fixed prefix of what was asked.
    return "Summary: " + " ".join(user.split())[:400]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, payload, status=200):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorised(self):
        if self.headers.get("Authorization") == f"Bearer {KEY}":
            return True
        error = {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}
        self.reply({"error": error}, 401)
        return False

    def do_GET(self):
        if not self.authorised():
            return
        self.reply({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if not self.authorised():
            return
        if self.path.endswith("/embeddings"):
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs or []
            data = []
            for i, text in enumerate(inputs):
                vector = embed(text)
                if body.get("encoding_format") == "base64":
                    vector = base64.b64encode(struct.pack(f"<{DIM}f", *vector)).decode()
                data.append({"object": "embedding", "index": i, "embedding": vector})
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            return self.reply({"object": "list", "data": data, "model": body.get("model"), "usage": usage})
        if self.path.endswith("/chat/completions"):
            content = answer(body)
            created, model = int(time.time()), body.get("model", "fake")
            if body.get("stream"):
                return self.stream(content, created, model)
            message = {"role": "assistant", "content": content}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            return self.reply({"id": "fake", "object": "chat.completion", "created": created, "model": model, "choices": [choice], "usage": usage})
        self.reply({"error": {"message": f"no route {self.path}"}}, 404)

    def stream(self, content, created, model):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for delta, finish in (({"role": "assistant", "content": content}, None), ({}, "stop")):
            chunk = {"id": "fake", "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
