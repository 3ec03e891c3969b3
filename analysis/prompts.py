"""Prompt sets: the toy world's held-out scenes or a text file; the judge's check of its prompts."""

from __future__ import annotations

from pathlib import Path


def read_prompts(spec: str) -> list[str]:
    """``held-out`` (the toy world's held-out scenes) or a UTF-8 text file, one prompt per line."""
    if spec == "held-out":
        from dde.toy.report import held_out_prompts

        return held_out_prompts()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"prompt file {path} does not exist (or use 'held-out')")
    try:
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file ({err})") from err
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def check_judge_prompts(prompts: list[str]) -> None:
    """The judge reads only the toy world's captions: say so before any model loads."""
    from dde.toy.world import parse_caption

    for i, prompt in enumerate(prompts):
        try:
            parse_caption(prompt)
        except ValueError as err:
            raise ValueError(f"the judge scores only the toy world's captions, and prompt {i + 1} ({prompt[:60]!r}) "
                             f"is not one ({err}); choose --scorers clip, hps or pickscore") from None
