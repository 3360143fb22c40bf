"""Labels defined by example texts: the examples file, the rule fitted on its embeddings, and
the labeller that answers like a trained model (label, score, top_k) through an embedding
bundle."""
