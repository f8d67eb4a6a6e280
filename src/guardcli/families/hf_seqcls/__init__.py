"""hf-seqcls: any transformers encoder *ForSequenceClassification (BERT, RoBERTa, DeBERTa-v2/v3,
ModernBERT, ...) exported to ONNX; the Guard registers from guard.py."""
