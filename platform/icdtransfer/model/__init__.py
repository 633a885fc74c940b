"""The Kim CNN, its stage-1 and stage-2 heads, and the five transfer variants."""
