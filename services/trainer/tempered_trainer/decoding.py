"""Decoding: greedy or sampled continuation of token-id prompts, for eval, compare, sample, serve and convert's check."""

import torch

from .architecture import context_length
from .devices import autocast


@torch.no_grad()
def generate(model, prompts, max_new_tokens: int, eos_id: int, temperature: float = 0.0, batch_size: int = 32, progress=None):
    """Decode each prompt (a list of token ids); returns (new token ids without eos, finished_by_eos) per prompt.

    Greedy when temperature is 0. Prompts of equal length are batched together, so no padding is ever needed
    and a batched answer is exactly the answer the prompt would get alone.
    """
    device = next(model.parameters()).device
    ctx = context_length(model.config)
    results = [None] * len(prompts)
    by_len = {}
    for i, p in enumerate(prompts):
        p = list(p)[-(ctx - 1):]  # keep room for at least one new token
        by_len.setdefault(len(p), []).append((i, p))
    for length, items in sorted(by_len.items()):
        for s in range(0, len(items), batch_size):
            chunk = items[s : s + batch_size]
            x = torch.tensor([p for _, p in chunk], dtype=torch.long, device=device)
            steps = min(max_new_tokens, ctx - length)
            out = [[] for _ in chunk]
            done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            past = None
            with autocast(device):
                for _ in range(steps):
                    o = model(input_ids=x, past_key_values=past, use_cache=True)
                    past, logits = o.past_key_values, o.logits[:, -1, :].float()
                    if temperature and temperature > 0:
                        nxt = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).squeeze(1)
                    else:
                        nxt = logits.argmax(dim=-1)
                    for j, t in enumerate(nxt.tolist()):
                        if not done[j]:
                            out[j].append(t)
                    done |= nxt == eos_id
                    if bool(done.all()):
                        break
                    x = nxt[:, None]
            for (i, _), toks in zip(chunk, out):
                finished = bool(toks) and toks[-1] == eos_id
                results[i] = (toks[:-1] if finished else toks, finished)
            if progress is not None:  # an events.Progress: keeps a long generation visibly alive
                progress.advance(len(chunk))
    return results
