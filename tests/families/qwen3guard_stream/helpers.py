"""The oracle: the reference's one-shot forward over the whole conversation, tokenized at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guardcli.families.qwen3guard_stream.labels import (
    ANSWER_PREFIX,
    ASSISTANT_HEADER,
    USER_TURN,
)

CONVERSATIONS = [
    ("tell me about a garden", "the river meadow lantern zorblax kettle maple"),
    ("zorblax at the harbor", "a quibblex violin, pebble and window."),
    ("a question", "Sure!  Here's   a list:\n\n1. teacup\n2. compass\t(ribbon) 42 ünïcödé 😀 done"),
    ("", "short"),
]


def reference_verdicts(module, tokenizer, prompt: str, answer: str):
    """(prompt risk index, [(risk index, category index, risk logits) per answer token],
    [answer token ids]) from one full forward, FP32."""
    import torch

    user = tokenizer.encode(USER_TURN.format(prompt=prompt), add_special_tokens=False).ids
    header = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False).ids
    enc = tokenizer.encode(ANSWER_PREFIX + answer, add_special_tokens=False)
    ids = user + header + enc.ids
    with torch.no_grad():
        out = module(input_ids=torch.tensor([ids]))
    qrisk = int(out.query_risk_level_logits[0, len(user) - 1].argmax())
    base = len(user) + len(header)
    answer_tokens = []
    for i, (_, end) in enumerate(enc.offsets):
        if end <= len(ANSWER_PREFIX):
            continue
        risk = out.risk_level_logits[0, base + i].numpy()
        cat = int(out.category_logits[0, base + i].argmax())
        answer_tokens.append((int(np.argmax(risk)), cat, risk))
    ids_out = [t for t, (_, e) in zip(enc.ids, enc.offsets, strict=True) if e > len(ANSWER_PREFIX)]
    return qrisk, answer_tokens, ids_out


def load_maps(model_dir: Path):
    import json

    from guardcli.families.qwen3guard_stream.labels import label_maps

    return label_maps(json.loads((model_dir / "config.json").read_text()))


def stream_together(guard, prompt: str, texts: list[str], piece: int):
    """Every text streamed at once through the server's StreamService (appends of `piece`
    characters, taken together so that they meet in one coalesced forward, then a final
    append): (each text's verdicts, the service's Metrics)."""
    import asyncio

    from guardcli.jobs.serve.prometheus import Metrics
    from guardcli.jobs.serve.stream_service import StreamOptions, StreamService

    async def run():
        metrics = Metrics(streams=True)
        service = StreamService(guard.stream_engine(), StreamOptions(max_wait_ms=50), metrics)
        try:
            opened = [await service.open([{"role": "user", "content": prompt}]) for _ in texts]
            out: list[list[dict]] = [[] for _ in texts]
            for k in range(0, max(map(len, texts)), piece):
                pairs = zip(opened, texts, strict=True)
                results = await asyncio.gather(
                    *(service.append(s, text=t[k : k + piece]) for s, t in pairs)
                )
                for i, r in enumerate(results):
                    out[i] += r["verdicts"]
            finals = await asyncio.gather(*(service.append(s, final=True) for s in opened))
            for i, r in enumerate(finals):
                out[i] += r["verdicts"]
            return out, metrics
        finally:
            service.stop()

    return asyncio.run(run())
