"""`serve`: an OpenAI-compatible server for one model, on the standard library's HTTP server.

    POST /v1/chat/completions  {model, messages, max_tokens?, temperature?}
    POST /v1/completions       {model, prompt, max_tokens?, temperature?}   (prompt: a string or a list of them)
    GET  /v1/models
    GET  /health               {"status": "ok"}

Everything a model is asked goes through its chat format (template.py), exactly as its training data did: a chat
request's whole conversation (system prompt and every turn), a completion's prompt as one user turn. Decoding is
greedy when temperature is 0 or absent and stops at the format's end token (`<|im_end|>` for ChatML,
`<|endoftext|>` for the plain template); usage counts the model's own tokens. Requests are handled on threads
but the model runs one request at a time. SIGTERM stops the server cleanly (exit code 0, `finished` event).
"""

import dataclasses
import json
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .architecture import count_params
from .config import Device, from_dict, require
from .decoding import generate
from .devices import resolve_device, setup_threads
from .events import emit, log
from .model_files import load_pretrained
from .template import check_messages, encode_prompt
from .tokenizer import chat_format_of

DEFAULT_MAX_TOKENS = 16


@dataclasses.dataclass
class ServeConfig:
    model: str  # model directory or model.tar
    host: str = "127.0.0.1"
    port: int = 8000  # 0 picks a free port; the `started` event says which
    model_name: str = "tempered"
    device: Device = "auto"

    def __post_init__(self):
        require(bool(self.model), "serve", "model", "must be a non-empty path")
        require(0 <= self.port <= 65535, "serve", "port", f"must be in 0..65535, got {self.port}")
        require(bool(self.model_name), "serve", "model_name", "must be a non-empty string")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Completer:
    """The loaded model and tokenizer behind a lock: torch modules are not meant for concurrent forwards."""

    def __init__(self, model, tokenizer, name: str):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.fmt = chat_format_of(tokenizer)
        self.lock = threading.Lock()
        self.created = int(time.time())
        self.requests = 0

    def complete(self, body: dict) -> dict:
        """A /v1/completions answer: each prompt string is asked as one user turn."""
        prompts = body.get("prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest(400, "'prompt' must be a string or a non-empty list of strings")
        # Training prompts were trimmed by the clean stage; trim here too so "...\n" asks the same question.
        outs, usage = self._generate(body, [p.strip() for p in prompts])
        choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": reason} for i, (text, reason) in enumerate(outs)]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": self.name,
                "choices": choices, "usage": usage}

    def chat(self, body: dict) -> dict:
        """A /v1/chat/completions answer: the whole conversation rendered by the model's chat template."""
        messages = body.get("messages")
        if isinstance(messages, list):
            messages = [{**m, "content": content_text(m.get("content"), f"messages[{i}].content")} if isinstance(m, dict) else m
                        for i, m in enumerate(messages)]
        why = check_messages(messages, "messages", ending="prompt")
        if why:
            raise BadRequest(400, why)
        outs, usage = self._generate(body, [[{"role": m["role"], "content": m["content"]} for m in messages]])
        choices = [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": reason}
                   for i, (text, reason) in enumerate(outs)]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": self.name,
                "choices": choices, "usage": usage}

    def _generate(self, body: dict, prompts: list):
        """([(text, finish_reason)], usage) for prompts (strings or message lists), with the request's settings."""
        if body.get("model") not in (None, self.name):
            raise BadRequest(404, f"model '{body.get('model')}' does not exist; this server serves '{self.name}'")
        max_tokens = body.get("max_tokens")
        max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest(400, "'max_tokens' must be a positive integer")
        temperature = body.get("temperature") or 0.0
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
            raise BadRequest(400, "'temperature' must be a number >= 0")

        try:
            ids = [encode_prompt(self.tokenizer, self.fmt, p) for p in prompts]
        except Exception as e:  # noqa: BLE001 - the chat template raised (jinja2's TemplateError): a bad conversation
            raise BadRequest(400, f"messages: the model's chat template refused this conversation: {e}") from e
        with self.lock:
            self.requests += 1
            outs = generate(self.model, ids, max_tokens, self.tokenizer.eos_token_id, temperature=float(temperature))
        answers, completion_tokens = [], 0
        for new, stopped in outs:
            completion_tokens += len(new) + int(stopped)
            answers.append((self.tokenizer.decode(new, skip_special_tokens=True), "stop" if stopped else "length"))
        prompt_tokens = sum(len(x) for x in ids)
        return answers, {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created, "owned_by": "tempered"}]}


def content_text(content, where: str):
    """A message's content: a string, or OpenAI's list of content parts of which only text parts are supported."""
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise BadRequest(400, f"{where}: only text content parts ({{type: 'text', text}}) are supported")
        return "\n".join(p["text"] for p in content)  # as ingest joins them: served as trained
    return content


def make_handler(completer: Completer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "tempered-serve"
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm the second waits ~40 ms for the
        # client's delayed ACK on every kept-alive request.
        disable_nagle_algorithm = True

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                self._send(200, {"status": "ok"})
            elif path == "/v1/models":
                self._send(200, completer.models())
            else:
                self._error(404, f"no route GET {path}")

        def do_POST(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            handle = {"/v1/completions": completer.complete, "/v1/chat/completions": completer.chat}.get(path)
            if handle is None:
                return self._error(404, f"no route POST {path}")
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest(400, "the request body must be a JSON object")
                self._send(200, handle(body))
            except json.JSONDecodeError as e:
                self._error(400, f"the request body is not JSON: {e}")
            except BadRequest as e:
                self._error(e.status, str(e))
            except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
                log.exception("completion failed")
                self._error(500, f"{type(e).__name__}: {e}")

        def log_message(self, fmt, *args):  # default writes to stderr unformatted; route through logging
            log.info("%s %s", self.address_string(), fmt % args)

    return Handler


def run(raw: dict) -> None:
    cfg = from_dict(ServeConfig, raw, "serve")
    setup_threads()
    device = resolve_device(cfg.device)
    model, tokenizer = load_pretrained(cfg.model, device)
    completer = Completer(model, tokenizer, cfg.model_name)
    server = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(completer))
    server.daemon_threads = True

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it must run off the thread that is serving.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    emit("started", command="serve", device=device.type, step=0, total_steps=0, params=count_params(model),
         host=cfg.host, port=port, model_name=cfg.model_name)
    log.info("serving %s on http://%s:%d", cfg.model_name, cfg.host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    emit("finished", command="serve", requests=completer.requests)
