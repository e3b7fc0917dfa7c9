"""The prompt template and special tokens, in one place and free of heavy imports (tokenize needs no torch)."""

EOS = "<|endoftext|>"  # ends every response; also the pad token for batching
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOS, PAD]  # trained in this order, so ids 0 and 1


def format_prompt(prompt: str) -> str:
    """The one prompt template: tokenize, sft, eval, dpo and serve all go through here."""
    return prompt + "\n"
