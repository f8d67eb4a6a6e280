"""core: records, verdicts, errors, variants, batching, tokenize, resolution and the cache. The
bottom layer: it imports nothing else of guardcli."""
