"""`serve`: an OpenAI-compatible server for one model, on the standard library's threading HTTP server.

    POST /v1/chat/completions  {model, messages, max_tokens?, temperature?, top_p?, n?, stop?, seed?, stream?, ...}
    POST /v1/completions       {model, prompt, ...}   (prompt: a string or a list of them)
    GET  /v1/models
    GET  /health               {"status": "ok"}

Everything a model is asked goes through its chat format (template.py), exactly as its training data did: a chat
request's whole conversation (system prompt and every turn), a completion's prompt as one user turn. Decoding is
greedy when temperature is 0 or absent, else sampled (top_p, presence and frequency penalties as OpenAI defines
them) from a torch generator seeded by `seed`; it stops at the format's end token, a `stop` string (cut before it)
or `max_tokens`. `n` answers per prompt, indexed prompt-major (prompt i's choice j is index i * n + j) as OpenAI
does. `stream: true` answers server-sent events in OpenAI's chunk format. An OpenAI parameter this server does not
implement (tools, echo, ...) or a field it does not know is refused with 400 naming it, never ignored. Log
probabilities (completions' `logprobs: k`, chats' `logprobs: true` with `top_logprobs: k`) are the model's own
(log-softmax of its logits, before temperature and penalties), per token of the text returned.

Requests are handled on threads; one batcher thread runs the model (torch modules are not meant for concurrent
forwards) and batches them dynamically: the requests that arrive within `batch_wait_ms` of the first waiting one,
up to `max_batch` rows (a prompt times n), are left-padded (attention mask and position ids keep the padding out)
and decoded together step by step, each row with its own sampling, penalties, stop strings and token budget,
finishing on its own; requests arriving meanwhile wait for the next batch. Greedy answers are the same batched or
alone. A seeded sampled request is decoded alone, so its answer never depends on what it was batched with.
`max_batch: 1` serves one request at a time. A request whose client went away (its socket closed: a failed write, or
EOF seen between two tokens) stops decoding at the next token, so it never holds the model for nothing. SIGTERM
stops the server cleanly (exit code 0, `finished` event).
"""

import collections
import dataclasses
import json
import queue
import select
import signal
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional

import torch

from .architecture import context_length, count_params
from .classifier import ClassifierCompleter, is_classifier
from .config import Device, from_dict, require
from .devices import autocast, resolve_device, setup_threads
from .events import emit, log
from .model_files import load_pretrained
from .template import check_messages, encode_prompt
from .tokenizer import chat_format_of

DEFAULT_MAX_TOKENS = 16
MAX_N = 128  # choices per prompt, as OpenAI allows
MAX_STOPS = 4  # stop strings, as OpenAI allows
MAX_PROMPTS = 128  # prompts in one completion request

# Fields every OpenAI call here accepts; each call adds its own below.
COMMON_FIELDS = {"model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "presence_penalty",
                 "frequency_penalty", "stream", "stream_options", "user", "logprobs"}
FIELDS = {"completion": COMMON_FIELDS | {"prompt"}, "chat": COMMON_FIELDS | {"messages", "max_completion_tokens", "top_logprobs"}}
MAX_LOGPROBS = {"completion": 5, "chat": 20}  # alternatives per token, as OpenAI allows


# OpenAI parameters this server knows but does not implement, refused by name (never silently ignored) unless
# their value asks for nothing (null, false, 0, an empty list or object).
REFUSED = {
    "echo": "echoing the prompt is not supported by this server",
    "suffix": "insertion (suffix) is not supported by this server",
    "logit_bias": "logit_bias is not supported by this server",
    "tools": "tools are not supported by this server",
    "tool_choice": "tools are not supported by this server",
    "functions": "functions are not supported by this server",
    "function_call": "functions are not supported by this server",
    "parallel_tool_calls": "tools are not supported by this server",
    "best_of": "best_of other than n is not supported by this server",
    "response_format": 'only {"type": "text"} is supported by this server',
}


def _refused(body: dict, kind: str) -> Optional[tuple]:
    """(param, why) for the first field that asks for something this server does not do."""
    for k, v in body.items():
        if k in FIELDS[kind]:
            continue
        if k not in REFUSED:
            return k, "is not a parameter this server supports"
        if k == "best_of":
            asks = v not in (None, body.get("n") or 1)
        elif k == "response_format":
            asks = v not in (None, {"type": "text"})
        else:
            asks = v not in (None, False, 0, "", [], {})
        if asks:
            return k, REFUSED[k]
    return None


@dataclasses.dataclass
class ServeConfig:
    model: str  # model directory or model.tar
    host: str = "127.0.0.1"
    port: int = 8000  # 0 picks a free port; the `started` event says which
    model_name: str = "tempered"
    device: Device = "auto"
    max_tokens_limit: int = 4096  # the most tokens one request may ask for (max_tokens above it: 400)
    # Dynamic batching: requests arriving within batch_wait_ms of the first waiting one are decoded together,
    # up to max_batch rows (a prompt times n). A few ms costs a lone request little and lets concurrent ones
    # share every forward; max_batch 1 serves one request at a time (the benchmark's baseline).
    max_batch: int = 8
    batch_wait_ms: float = 5.0

    def __post_init__(self):
        require(bool(self.model), "serve", "model", "must be a non-empty path")
        require(0 <= self.port <= 65535, "serve", "port", f"must be in 0..65535, got {self.port}")
        require(bool(self.model_name), "serve", "model_name", "must be a non-empty string")
        require(self.max_batch >= 1, "serve", "max_batch", f"must be >= 1, got {self.max_batch}")
        require(0 <= self.batch_wait_ms <= 1000, "serve", "batch_wait_ms", f"must be in 0..1000, got {self.batch_wait_ms}")
        require(self.max_tokens_limit >= 1, "serve", "max_tokens_limit", f"must be >= 1, got {self.max_tokens_limit}")


class BadRequest(Exception):
    def __init__(self, status: int, message: str, param: Optional[str] = None):
        super().__init__(f"{param}: {message}" if param else message)
        self.status, self.param = status, param


def _number(body, key, lo, hi, default):
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not (lo <= v <= hi):
        raise BadRequest(400, f"must be a number from {lo} to {hi}", key)
    return float(v)


def _whole(body, key, lo, hi, default):
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or not (lo <= v <= hi):
        raise BadRequest(400, f"must be a whole number from {lo} to {hi}", key)
    return v


@dataclasses.dataclass
class Sampling:
    """What a request asks of decoding, checked."""

    max_tokens: int
    temperature: float  # 0: greedy
    top_p: float
    n: int
    stop: List[str]
    seed: Optional[int]
    presence_penalty: float
    frequency_penalty: float
    stream: bool
    include_usage: bool
    logprobs: Optional[int]  # None: none asked; k: each token's log probability and its k likeliest alternatives

    @classmethod
    def of(cls, body: dict, kind: str, max_tokens_limit: int) -> "Sampling":
        refused = _refused(body, kind)
        if refused:
            raise BadRequest(400, refused[1], refused[0])
        key = "max_tokens" if body.get("max_tokens") is not None or kind == "completion" else "max_completion_tokens"
        max_tokens = _whole(body, key, 1, max_tokens_limit, DEFAULT_MAX_TOKENS)
        stop = body.get("stop")
        stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
            raise BadRequest(400, f"must be a non-empty string or a list of at most {MAX_STOPS} of them", "stop")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise BadRequest(400, "must be a whole number", "seed")
        stream = body.get("stream")
        if not (stream is None or isinstance(stream, bool)):
            raise BadRequest(400, "must be true or false", "stream")
        options = body.get("stream_options")
        if options is not None:
            if not stream:
                raise BadRequest(400, "is only allowed with stream: true", "stream_options")
            if not isinstance(options, dict) or set(options) - {"include_usage"} or options.get("include_usage") not in (None, True, False):
                raise BadRequest(400, "must be {include_usage: true|false}", "stream_options")
        if kind == "completion":
            logprobs = _whole(body, "logprobs", 0, MAX_LOGPROBS[kind], None)
        else:
            if not (body.get("logprobs") is None or isinstance(body.get("logprobs"), bool)):
                raise BadRequest(400, "must be true or false", "logprobs")
            top = _whole(body, "top_logprobs", 0, MAX_LOGPROBS[kind], None)
            if top is not None and body.get("logprobs") is not True:
                raise BadRequest(400, "needs logprobs: true", "top_logprobs")
            logprobs = (top or 0) if body.get("logprobs") else None
        return cls(
            logprobs=logprobs,
            max_tokens=max_tokens,
            temperature=_number(body, "temperature", 0, 2, 0.0),
            top_p=_number(body, "top_p", 0, 1, 1.0),
            n=_whole(body, "n", 1, MAX_N, 1),
            stop=stop,
            seed=seed,
            presence_penalty=_number(body, "presence_penalty", -2, 2, 0.0),
            frequency_penalty=_number(body, "frequency_penalty", -2, 2, 0.0),
            stream=bool(stream),
            include_usage=bool(options and options.get("include_usage")),
        )


class Cancelled(Exception):
    """The client went away: decoding stops."""


class Choice:
    """One answer as it is decoded: its tokens, how much of its text has been released, and why it ended.

    Text is released as soon as it is final: never the start of what may become a stop string (held back until
    the next token settles it, since the answer is cut before a stop string), never half of a UTF-8 character
    (a byte-level token may end inside one; it decodes as U+FFFD until the rest arrives). So the pieces a stream
    sends add up to exactly the text a non-streamed answer gives."""

    def __init__(self, stops: List[str]):
        self.stops = stops
        self.tokens: List[int] = []
        # (token id, its log probability, [(id, log probability)] alternatives, offset of its text), when asked
        self.logprobs: List[tuple] = []
        self.logprobs_sent = 0
        self.generated = 0  # tokens decoded for it, its end token included: its share of completion_tokens
        self.sent = 0  # characters of the text released
        self.text = ""
        self.finish: Optional[str] = None

    def push(self, token: int, tokenizer, eos_id: int, last: bool, logprob=None) -> str:
        """Takes the next token (with its log probability and alternatives, when asked); returns the text it
        releases (possibly empty)."""
        self.generated += 1
        if token == eos_id:
            return self._end("stop", self.text)
        if logprob is not None:
            self.logprobs.append((token, logprob[0], logprob[1], len(self.text)))
        self.tokens.append(token)
        # clean_up_tokenization_spaces off: a cleaned-up decode is not a prefix of the longer one's.
        text = self.text = tokenizer.decode(self.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        hits = [i for i in (text.find(s, self.sent) for s in self.stops) if i >= 0]
        if hits:
            return self._end("stop", text[: min(hits)])
        if last:
            return self._end("length", text)
        safe = len(text)
        while safe > self.sent and text[safe - 1] == "\ufffd":
            safe -= 1
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, safe - self.sent), hold, -1):
                if text.endswith(s[:k], 0, safe):
                    hold = k
                    break
        safe -= hold
        piece, self.sent = text[self.sent : safe], max(self.sent, safe)
        return piece

    def _end(self, reason: str, text: str) -> str:
        if len(text) < len(self.text):  # cut at a stop string: the tokens after the cut are not part of the answer
            self.logprobs = [lp for lp in self.logprobs if lp[3] < len(text)]
        self.finish, self.text = reason, text
        piece, self.sent = text[self.sent :], len(text)
        return piece

    def released_logprobs(self) -> List[tuple]:
        """The log probabilities of the tokens whose text starts in what has been released, not given before."""
        n = len(self.logprobs) if self.finish else sum(1 for lp in self.logprobs if lp[3] < self.sent)
        out, self.logprobs_sent = self.logprobs[self.logprobs_sent : n], max(self.logprobs_sent, n)
        return out


class Job:
    """A checked request, ready to decode: its kind, prompts as token ids and sampling."""

    def __init__(self, kind: str, ids: List[List[int]], sampling: Sampling):
        self.kind, self.ids, self.sampling = kind, ids, sampling
        self.id = f"{'cmpl' if kind == 'completion' else 'chatcmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.choices: List[Choice] = []
        self.alive, self.events, self.abandoned = (lambda: True), None, False  # set by Completer.run

    def usage(self) -> dict:
        prompt = sum(len(x) for x in self.ids)
        completion = sum(c.generated for c in self.choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Completer:
    """The loaded model and tokenizer, run by one batcher thread (torch modules are not meant for concurrent
    forwards): requests that arrive together are decoded together, up to `max_batch` rows (1: one at a time)."""

    def __init__(self, model, tokenizer, name: str, max_tokens_limit: int = 4096, max_batch: int = 8, batch_wait_ms: float = 5.0):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.fmt = chat_format_of(tokenizer)
        self.max_tokens_limit = max_tokens_limit
        self.lock = threading.Lock()
        self.created = int(time.time())
        self.requests = 0
        self.cancelled = 0
        self.max_batch, self.batch_wait_ms = max_batch, batch_wait_ms
        self.batch_sizes: collections.Counter = collections.Counter()  # requests per batch -> batches decoded
        self.pending: "queue.Queue[Job]" = queue.Queue()
        self._next: Optional[Job] = None  # a job that did not fit the last batch: it opens the next
        threading.Thread(target=self._batches, name="batcher", daemon=True).start()

    # --- requests -------------------------------------------------------------------------------------------

    def prepare(self, kind: str, body: dict) -> Job:
        """The request checked (400/404 on anything wrong, before any answer starts) and its prompts encoded."""
        if body.get("model") not in (None, self.name):
            raise BadRequest(404, f"model '{body.get('model')}' does not exist; this server serves '{self.name}'", "model")
        sampling = Sampling.of(body, kind, self.max_tokens_limit)
        prompts = request_prompts(kind, body)
        try:
            ids = [encode_prompt(self.tokenizer, self.fmt, p) for p in prompts]
        except Exception as e:  # noqa: BLE001 - the chat template raised (jinja2's TemplateError): a bad conversation
            raise BadRequest(400, f"the model's chat template refused this conversation: {e}", "messages") from e
        return Job(kind, ids, sampling)

    def run(self, job: Job, alive=lambda: True) -> Iterator[tuple]:
        """Hands the job to the batcher and yields (choice index, released text, finish reason or None) as its
        tokens come; `alive()` is asked before every token, and False stops decoding (Cancelled). A consumer
        that stops iterating (a stream whose write failed) abandons the job, which frees its rows as well."""
        job.alive, job.events = alive, queue.Queue()
        job.choices = [Choice(job.sampling.stop) for _ in range(len(job.ids) * job.sampling.n)]
        self.pending.put(job)
        try:
            while True:
                item = job.events.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.abandoned = True

    def _batches(self) -> None:
        """The batcher thread, the only one that runs the model: it takes the first waiting job, gathers the
        jobs that arrive within `batch_wait_ms` up to `max_batch` rows (a prompt times n is a row), and decodes
        them together. A seeded sampled job is decoded alone so its answer does not depend on its neighbours."""
        while True:
            first, self._next = self._next or self.pending.get(), None
            batch, rows = [first], len(first.ids) * first.sampling.n
            deadline = time.monotonic() + self.batch_wait_ms / 1000
            while not self._alone(first) and rows < self.max_batch:
                try:
                    job = self.pending.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                size = len(job.ids) * job.sampling.n
                if self._alone(job) or rows + size > self.max_batch:
                    self._next = job  # it starts the next batch, so arrival order is kept
                    break
                batch.append(job)
                rows += size
            with self.lock:
                self.requests += len(batch)
                self.batch_sizes[len(batch)] += 1
                try:
                    self._decode(batch)
                except Exception as e:  # noqa: BLE001 - every request of the batch hears of it, the thread lives on
                    log.exception("batch failed")
                    for job in batch:
                        job.events.put(e)

    def _alone(self, job: Job) -> bool:
        return self.max_batch == 1 or (job.sampling.seed is not None and job.sampling.temperature > 0)

    @torch.no_grad()
    def _decode(self, jobs: List[Job]) -> None:
        """Decodes every row of the jobs together: prompts left-padded (attention mask and position ids keep the
        padding out), each row with its own step budget, sampling, penalties and stop strings, finishing on its
        own. A job whose client went away drops out at the next token."""
        device = next(self.model.parameters()).device
        ctx = context_length(self.model.config)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        prompts, owners, limits, spans = [], [], [], []  # per row: token ids, (job, choice index), step budget
        for job in jobs:
            s, start = job.sampling, len(prompts)
            for p, ids in enumerate(job.ids):
                prompt = list(ids)[-(ctx - 1):]  # keep room for at least one new token
                for j in range(s.n):
                    prompts.append(prompt)
                    owners.append((job, p * s.n + j))
                    limits.append(min(s.max_tokens, ctx - len(prompt)))
            spans.append((job, start, len(prompts)))
        width = max(len(p) for p in prompts)
        x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], dtype=torch.long, device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long, device=device)
        pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
        gens = {}
        for job in jobs:
            gens[id(job)] = torch.Generator(device=device)
            if job.sampling.seed is None:
                gens[id(job)].seed()
            else:
                gens[id(job)].manual_seed(job.sampling.seed)
        counts = {}
        done = [False] * len(prompts)
        open_jobs = set(id(j) for j in jobs)
        past = None
        with autocast(device):
            for step in range(max(limits)):
                for job, lo, hi in spans:
                    if id(job) in open_jobs and (job.abandoned or not job.alive()):
                        steps = max(limits[lo:hi])
                        job.events.put(Cancelled(f"after {step} of at most {steps} tokens"))
                        open_jobs.discard(id(job))
                        done[lo:hi] = [True] * (hi - lo)
                if all(done):
                    break
                out = self.model(input_ids=x, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[:, -1, :].float()
                nxt = logits.argmax(dim=-1)
                for job, lo, hi in spans:
                    if id(job) not in open_jobs:
                        continue
                    s = job.sampling
                    rows = logits[lo:hi]
                    logp = torch.log_softmax(rows, dim=-1) if s.logprobs is not None else None
                    if s.presence_penalty or s.frequency_penalty:
                        c = counts.setdefault(id(job), torch.zeros_like(rows))
                        rows = rows - s.frequency_penalty * c - s.presence_penalty * (c > 0).float()
                    picked = self._pick(rows, s, gens[id(job)])
                    nxt[lo:hi] = picked
                    if id(job) in counts:
                        counts[id(job)].scatter_add_(1, picked[:, None], torch.ones_like(picked[:, None], dtype=rows.dtype))
                    if logp is not None:
                        chosen = logp.gather(1, picked[:, None]).squeeze(1).tolist()
                        top = logp.topk(s.logprobs, dim=-1) if s.logprobs else None
                    for r, t in zip(range(lo, hi), picked.tolist()):
                        if done[r]:
                            continue
                        index = owners[r][1]
                        c = job.choices[index]
                        lp = None
                        if logp is not None:
                            k = r - lo
                            lp = (chosen[k], list(zip(top.indices[k].tolist(), top.values[k].tolist())) if top is not None else [])
                        piece = c.push(t, self.tokenizer, eos, step == limits[r] - 1, lp)
                        if piece or c.finish:
                            job.events.put((index, piece, c.finish))
                        done[r] = c.finish is not None
                    if all(done[lo:hi]):
                        job.events.put(None)
                        open_jobs.discard(id(job))
                x = nxt[:, None]
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                pos = pos[:, -1:] + 1

    @staticmethod
    def _pick(logits, s: Sampling, gen):
        if s.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / s.temperature, dim=-1)
        if s.top_p < 1:
            # Nucleus: the most likely tokens whose probabilities add up to top_p (the first always kept).
            sorted_p, order = probs.sort(dim=-1, descending=True)
            sorted_p[(sorted_p.cumsum(dim=-1) - sorted_p) > s.top_p] = 0
            probs = torch.zeros_like(probs).scatter_(1, order, sorted_p)
        return torch.multinomial(probs, 1, generator=gen).squeeze(1)

    # --- answers --------------------------------------------------------------------------------------------

    def _logprobs(self, job: Job, entries: List[tuple]):
        """OpenAI's logprobs object for some of a choice's tokens: completions' {tokens, token_logprobs,
        top_logprobs, text_offset}, chats' {content: [{token, logprob, bytes, top_logprobs}], refusal}."""
        if job.sampling.logprobs is None:
            return None
        text = lambda i: self.tokenizer.decode([i])  # noqa: E731 - a token's own text (U+FFFD for part of a character)
        if job.kind == "completion":
            return {"tokens": [text(t) for t, *_ in entries], "token_logprobs": [lp for _, lp, *_ in entries],
                    "top_logprobs": [{text(a): v for a, v in top} for _, _, top, _ in entries], "text_offset": [o for *_, o in entries]}

        def item(t, lp):
            return {"token": text(t), "logprob": lp, "bytes": list(text(t).encode("utf-8"))}

        return {"content": [{**item(t, lp), "top_logprobs": [item(a, v) for a, v in top]} for t, lp, top, _ in entries], "refusal": None}

    def answer(self, job: Job, alive=lambda: True) -> dict:
        """The whole (non-streamed) OpenAI answer."""
        for _ in self.run(job, alive):
            pass
        choices = []
        for i, c in enumerate(job.choices):
            logprobs = self._logprobs(job, c.logprobs)
            if job.kind == "completion":
                choices.append({"index": i, "text": c.text, "logprobs": logprobs, "finish_reason": c.finish})
            else:
                choices.append({"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": logprobs, "finish_reason": c.finish})
        return {"id": job.id, "object": "text_completion" if job.kind == "completion" else "chat.completion", "created": job.created,
                "model": self.name, "choices": choices, "usage": job.usage()}

    def chunks(self, job: Job, alive=lambda: True) -> Iterator[dict]:
        """The streamed answer as OpenAI's chunks: for a chat, each choice's first chunk carries the role, then
        content pieces, then an empty delta with its finish_reason; for a completion, text pieces, the last with
        its finish_reason. With stream_options.include_usage every chunk has `usage: null` and a last chunk with
        no choices carries the usage."""
        chat = job.kind == "chat"
        head = {"id": job.id, "object": "chat.completion.chunk" if chat else "text_completion", "created": job.created, "model": self.name}
        extra = {"usage": None} if job.sampling.include_usage else {}

        def chunk(index, finish=None, **choice):
            return {**head, "choices": [{"index": index, **choice, "logprobs": None, "finish_reason": finish}], **extra}

        def piece_chunk(index, piece):
            out = chunk(index, delta={"content": piece}) if chat else chunk(index, text=piece)
            out["choices"][0]["logprobs"] = self._logprobs(job, job.choices[index].released_logprobs())
            return out

        if chat:
            for i in range(len(job.ids) * job.sampling.n):
                yield chunk(i, delta={"role": "assistant", "content": ""})
        for i, piece, finish in self.run(job, alive):
            if piece or (job.sampling.logprobs is not None and finish and job.choices[i].logprobs_sent < len(job.choices[i].logprobs)):
                yield piece_chunk(i, piece)
            if finish:
                yield chunk(i, delta={}, finish=finish) if chat else chunk(i, text="", finish=finish)
        if job.sampling.include_usage:
            yield {**head, "choices": [], "usage": job.usage()}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created, "owned_by": "tempered"}]}


def request_prompts(kind: str, body: dict) -> list:
    """What a request asks, checked (400 naming the field): a completion's prompts (strings), or a chat's one conversation."""
    if kind == "completion":
        prompts = body.get("prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or len(prompts) > MAX_PROMPTS or not all(isinstance(p, str) for p in prompts):
            raise BadRequest(400, f"must be a string or a list of 1 to {MAX_PROMPTS} strings", "prompt")
        # Training prompts were trimmed by the clean stage; trim here too so "...\n" asks the same question.
        return [p.strip() for p in prompts]
    messages = body.get("messages")
    if isinstance(messages, list):
        messages = [{**m, "content": content_text(m.get("content"), f"messages[{i}].content")} if isinstance(m, dict) else m
                    for i, m in enumerate(messages)]
    why = check_messages(messages, "messages", ending="prompt")
    if why:
        raise BadRequest(400, why)
    return [[{"role": m["role"], "content": m["content"]} for m in messages]]


def content_text(content, where: str):
    """A message's content: a string, or OpenAI's list of content parts of which only text parts are supported."""
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise BadRequest(400, "only text content parts ({type: 'text', text}) are supported", where)
        return "\n".join(p["text"] for p in content)  # as ingest joins them: served as trained
    return content


def make_handler(completer: Completer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "tempered-serve"
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm the second waits ~40 ms for the
        # client's delayed ACK on every kept-alive request (and every streamed chunk would wait for the last).
        disable_nagle_algorithm = True

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, param: Optional[str] = None) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._send(status, {"error": {"message": message, "type": kind, "param": param, "code": status}})

        def _alive(self) -> bool:
            """Whether the client is still there: its socket has not reached EOF (it closed) or reset."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return not readable or self.connection.recv(1, socket.MSG_PEEK) != b""
            except OSError:
                return False

        def _event(self, data: bytes) -> None:
            """One server-sent event, as one chunk of the chunked body (so the connection can be kept alive)."""
            frame = b"data: " + data + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()

        def _stream(self, job: Job) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = completer.chunks(job, self._alive)
            try:
                for chunk in events:
                    self._event(json.dumps(chunk).encode("utf-8"))
            except (BrokenPipeError, ConnectionResetError):
                raise Cancelled("the client closed the stream")
            except Cancelled:
                raise
            except Exception as e:  # noqa: BLE001 - headers are out: the error goes as an event, as OpenAI sends it
                log.exception("streamed completion failed")
                self._event(json.dumps({"error": {"message": f"{type(e).__name__}: {e}", "type": "server_error", "param": None, "code": 500}}).encode())
            finally:
                events.close()
            self._event(b"[DONE]")
            self.wfile.write(b"0\r\n\r\n")

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
            kind = {"/v1/completions": "completion", "/v1/chat/completions": "chat"}.get(path)
            if kind is None:
                return self._error(404, f"no route POST {path}")
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest(400, "the request body must be a JSON object")
                job = completer.prepare(kind, body)
                if job.sampling.stream:
                    self._stream(job)
                else:
                    self._send(200, completer.answer(job, self._alive))
            except json.JSONDecodeError as e:
                self._error(400, f"the request body is not JSON: {e}")
            except BadRequest as e:
                self._error(e.status, str(e), e.param)
            except Cancelled as e:
                completer.cancelled += 1
                self.close_connection = True
                log.info("generation cancelled, the client went away: %s", e)
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
    if is_classifier(cfg.model):  # classifier.py: the same routes, answered with a label
        model, completer = None, ClassifierCompleter(cfg.model, cfg.model_name, cfg.max_tokens_limit)
    else:
        model, tokenizer = load_pretrained(cfg.model, device)
        completer = Completer(model, tokenizer, cfg.model_name, cfg.max_tokens_limit, cfg.max_batch, cfg.batch_wait_ms)
    server = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(completer))
    server.daemon_threads = True

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it must run off the thread that is serving.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    emit("started", command="serve", device=device.type, step=0, total_steps=0, params=count_params(model) if model is not None else None,
         host=cfg.host, port=port, model_name=cfg.model_name)
    log.info("serving %s on http://%s:%d", cfg.model_name, cfg.host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    emit("finished", command="serve", requests=completer.requests, cancelled=completer.cancelled,
         batches={str(k): v for k, v in sorted(completer.batch_sizes.items())})
