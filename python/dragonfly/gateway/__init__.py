"""The data plane: an RSGI application served by Granian (inference, models, receipts)."""
