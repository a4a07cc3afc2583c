"""Information gain of a thought (RLP): how much a thought raises the likelihood of what follows."""
