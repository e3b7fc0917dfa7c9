"""How a conversation becomes the tokens a model trains on and is served with, in one place: tokenize, sft, eval,
sample, dpo, reward, rl, compare and serve all render through here, so a model is trained on exactly the text it
is later asked with. Free of heavy imports (tokenize needs no torch).

A model has a chat format: a chat template (Jinja, from its tokenizer_config.json or chat_template.jinja, such as
SmolLM2's ChatML) and the token that ends an assistant turn (its eos, `<|im_end|>`), or, for the tiny GPT-2s
trained from scratch, the plain template: every system or user turn followed by "\\n", every assistant turn
followed by `<|endoftext|>`. A prompt/response record is the conversation [user: prompt, assistant: response],
so under the plain template it renders as `prompt + "\\n"` then `response<|endoftext|>`, as it always has.

Loss falls on each assistant turn's text and its end token, nothing else; a plain-text record (continued
pretraining) is all loss.
"""

import dataclasses
import json
import os
from typing import List, Optional, Tuple

EOS = "<|endoftext|>"  # ends every response of the plain template; also the pad token for batching
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOS, PAD]  # trained in this order, so ids 0 and 1

ROLES = ("system", "user", "assistant")

Segment = Tuple[str, bool]  # (text, carries loss)


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    """A model's chat template (None: the plain one) and its end-of-turn token."""

    template: Optional[str] = None
    end: str = EOS

    def as_dict(self) -> dict:
        return {"template": self.template, "end": self.end}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "ChatFormat":
        """From a checkpoint's `chat_format` (None in checkpoints written before it existed: the plain format)."""
        return cls(d.get("template"), d.get("end") or EOS) if d else cls()


PLAIN = ChatFormat()


def _token_text(value) -> Optional[str]:
    """tokenizer_config.json writes special tokens as strings or as {"content": ...} objects."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def read_chat_format(model_dir: str) -> ChatFormat:
    """The chat format a model directory declares: its chat template (tokenizer_config.json's `chat_template`, or
    the `chat_template.jinja` file transformers 5 writes) and its eos token; without a template, the plain one."""
    config = {}
    path = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    jinja = os.path.join(model_dir, "chat_template.jinja")
    if template is None and os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            template = f.read()
    if not template:
        return PLAIN
    return ChatFormat(template, _token_text(config.get("eos_token")) or EOS)


def tokenizer_config_fields(fmt: ChatFormat) -> dict:
    """What tokenizer_config.json must say so that `read_chat_format` gives `fmt` back."""
    return {"eos_token": fmt.end, **({"chat_template": fmt.template} if fmt.template else {})}


# --- records and conversations --------------------------------------------------------------------------------


def conversation(record: dict) -> Optional[List[dict]]:
    """The messages of a training record ({prompt, response} or {messages}); None for a plain-text record."""
    if "messages" in record:
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if "text" in record and "prompt" not in record:
        return None
    return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["response"]}]


def as_messages(prompt) -> List[dict]:
    """A prompt given as a string (one user turn) or as a list of messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def check_messages(messages, where: str = "messages", ending: Optional[str] = None) -> Optional[str]:
    """Why `messages` is not a usable conversation (None when it is): {role, content} objects with OpenAI roles,
    a system message only first; `ending` "assistant" for training records, "prompt" for something to answer."""
    if not isinstance(messages, list) or not messages:
        return f"{where} must be a non-empty list of {{role, content}}"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return f"{where}[{i}].role must be one of {', '.join(ROLES)}"
        if not isinstance(m.get("content"), str):
            return f"{where}[{i}].content must be a string"
        if m["role"] == "system" and i > 0:
            return f"{where}[{i}]: a system message may only come first"
    if ending == "assistant" and messages[-1]["role"] != "assistant":
        return f"{where} must end with an assistant message (the answer to learn)"
    if ending == "prompt" and messages[-1]["role"] == "assistant":
        return f"{where} must not end with an assistant message (there would be nothing to answer)"
    return None


# --- rendering ------------------------------------------------------------------------------------------------


def _render(fmt: ChatFormat, messages: List[dict], add_generation_prompt: bool) -> str:
    """The template applied to `messages`, as transformers' apply_chat_template renders it."""
    if fmt.template is None:
        out = []
        for m in messages:
            out.append(m["content"] + (fmt.end if m["role"] == "assistant" else "\n"))
        return "".join(out)
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=fmt.template, add_generation_prompt=add_generation_prompt)
    return rendered[0]


def segments(fmt: ChatFormat, messages: List[dict]) -> List[Segment]:
    """A training conversation as text pieces, each marked with whether it carries loss: every assistant turn's
    text and end token do; the rest (system prompt, user turns, the template's markup) does not.

    With a chat template, the turns are found by rendering growing prefixes of the conversation: the text that
    rendering `messages[:i+1]` adds to `messages[:i]` with a generation prompt is assistant turn i, up to and
    including the end token (what follows it, such as ChatML's newline, carries no loss)."""
    if fmt.template is None:
        out = []
        for m in messages:
            if m["role"] == "assistant":
                out += [(m["content"], True), (fmt.end, True)]
            else:
                out.append((m["content"] + "\n", False))
        return _merged(out)
    out, done = [], ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(fmt, messages[:i], add_generation_prompt=True)
        upto = _render(fmt, messages[: i + 1], add_generation_prompt=False)
        if not before.startswith(done) or not upto.startswith(before):
            raise ValueError("the chat template does not render a conversation as a growing prefix; its turns cannot be told apart")
        turn = upto[len(before):]
        cut = turn.find(fmt.end)
        if cut < 0:
            raise ValueError(f"the chat template does not end an assistant turn with {fmt.end!r}")
        cut += len(fmt.end)
        out += [(before[len(done):], False), (turn[:cut], True), (turn[cut:], False)]
        done = upto
    return _merged(out)


def text_segments(fmt: ChatFormat, text: str) -> List[Segment]:
    """A plain-text record: all of it carries loss, ended like an assistant turn."""
    return [(text + fmt.end, True)]


def record_segments(fmt: ChatFormat, record: dict) -> List[Segment]:
    messages = conversation(record)
    return text_segments(fmt, record["text"]) if messages is None else segments(fmt, messages)


def vocabulary_texts(record: dict) -> List[str]:
    """The texts a tokenizer trained here learns its vocabulary from: the plain template's pieces without the end
    token (a special token, never merged with text)."""
    messages = conversation(record)
    if messages is None:
        return [record["text"]]
    return [m["content"] if m["role"] == "assistant" else m["content"] + "\n" for m in messages]


def prompt_text(fmt: ChatFormat, messages: List[dict]) -> str:
    """The text a model continues to answer `messages` (a conversation that does not end with an answer)."""
    return _render(fmt, messages, add_generation_prompt=True)


def _merged(segs: List[Segment]) -> List[Segment]:
    """Adjacent pieces with the same loss flag joined, empty ones dropped."""
    out: List[Segment] = []
    for text, loss in segs:
        if not text:
            continue
        if out and out[-1][1] == loss:
            out[-1] = (out[-1][0] + text, loss)
        else:
            out.append((text, loss))
    return out


# --- encoding -------------------------------------------------------------------------------------------------


def backend_of(tokenizer):
    """The `tokenizers.Tokenizer` behind a transformers fast tokenizer (or the one given)."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def encode_segments(tokenizer, segs: List[Segment]) -> Tuple[List[int], List[int]]:
    """(token ids, loss mask). Each piece is encoded on its own, so a loss boundary never falls inside a token;
    special tokens in the text (`<|im_start|>`, the end token) become their ids. No BOS or other post-processing
    is added: the template says everything the model sees."""
    backend = backend_of(tokenizer)
    encoded = backend.encode_batch([t for t, _ in segs], add_special_tokens=False)
    ids, mask = [], []
    for enc, (_, loss) in zip(encoded, segs):
        ids += enc.ids
        mask += [int(loss)] * len(enc.ids)
    return ids, mask


def encode_prompt(tokenizer, fmt: ChatFormat, prompt) -> List[int]:
    """Token ids of the generation prompt for a string (one user turn) or a list of messages."""
    return backend_of(tokenizer).encode(prompt_text(fmt, as_messages(prompt)), add_special_tokens=False).ids
