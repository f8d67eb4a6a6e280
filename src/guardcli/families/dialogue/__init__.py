"""Dialogue: an intent classifier over a conversation (a seqcls graph plus a task description)."""
