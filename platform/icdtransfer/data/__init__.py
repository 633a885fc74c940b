"""Data layer: readers, codes, tokenizer, vocabulary, splits, the on-disk corpus, synthesis."""
