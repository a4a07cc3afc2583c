"""P(keyword | context) on fixed probe pairs, read before every optimizer step."""
