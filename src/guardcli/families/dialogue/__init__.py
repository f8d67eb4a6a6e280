"""dialogue: an intent classifier over a conversation (a seqcls graph plus a task description)."""

from guardcli.core.registry import Family

DIALOGUE_MARKER = "task_description.txt"

FAMILY = Family(
    name="dialogue",
    guard="guardcli.families.dialogue.guard:DialogueGuard",
    threshold=0.5,
    max_length=4096,
    marker=DIALOGUE_MARKER,
    priority=30,
    order=20,
    runs_onnx=True,
    synth={"intent-ctx": "guardcli.families.dialogue.synthetic:synth"},
)

# The classifier with past-KV inputs, beside a variant's graph (families.dialogue.prefix).
KV_GRAPHS = {"fp32": "model_kv.onnx", "int8": "model_kv_quantized.onnx"}
