"""Layer-wise update share: where each optimizer step lands, by layer group (EFT's lower vs upper layers)."""
