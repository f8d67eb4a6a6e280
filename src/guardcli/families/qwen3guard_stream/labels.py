"""Label maps, config keys and the conversation layout of Qwen3Guard-Stream (spec §2, §3, §5)."""

from __future__ import annotations

from typing import Any

# Index 1 is Unsafe, not Controversial (spec §3).
RISK_LEVELS = {0: "Safe", 1: "Unsafe", 2: "Controversial"}
SAFE, UNSAFE, CONTROVERSIAL = 0, 1, 2
RESPONSE_CATEGORIES = {
    0: "Violent",
    1: "Sexual Content or Sexual Acts",
    2: "Suicide & Self-Harm",
    3: "Politically Sensitive Topics",
    4: "PII",
    5: "Copyright Violation",
    6: "Non-violent Illegal Acts",
    7: "Unethical Acts",
}
QUERY_CATEGORIES = {**RESPONSE_CATEGORIES, 8: "Jailbreak"}
MAP_KEYS = (
    "response_risk_level_map",
    "response_category_map",
    "query_risk_level_map",
    "query_category_map",
)
ARCHITECTURE = "Qwen3ForGuardModel"

IM_START, IM_END, USER = 151644, 151645, 872
# The user turn, up to and including the <|im_end|> whose query-head verdict is the prompt's.
USER_TURN = "<|im_start|>user\n{prompt}<|im_end|>"
# Between the user's <|im_end|> and the answer: the template's assistant header with thinking
# off. Its trailing "\n\n" is tokenized together with the answer's first characters (they share
# one segment between added tokens), so it is the answer segment's fixed prefix instead.
ASSISTANT_HEADER = "\n<|im_start|>assistant\n<think>\n\n</think>"
ANSWER_PREFIX = "\n\n"


def label_maps(config: dict[str, Any]) -> dict[str, dict[int, str]]:
    """The four maps from a config.json dict (string keys in JSON, int keys here)."""
    maps = {}
    for key in MAP_KEYS:
        raw = config.get(key)
        if not isinstance(raw, dict) or not raw:
            raise ValueError(f"config.json has no {key}")
        maps[key] = {int(k): str(v) for k, v in raw.items()}
    return maps


def guard_config_keys(inner: int = 512) -> dict[str, Any]:
    """The guard-specific keys config.json carries next to the Qwen3 trunk's."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "qwen3",
        "guard_inner_size": inner,
        "num_risk_level": len(RISK_LEVELS),
        "num_category": len(RESPONSE_CATEGORIES),
        "num_query_risk_level": len(RISK_LEVELS),
        "num_query_category": len(QUERY_CATEGORIES),
        "response_risk_level_map": {str(k): v for k, v in RISK_LEVELS.items()},
        "response_category_map": {str(k): v for k, v in RESPONSE_CATEGORIES.items()},
        "query_risk_level_map": {str(k): v for k, v in RISK_LEVELS.items()},
        "query_category_map": {str(k): v for k, v in QUERY_CATEGORIES.items()},
    }
