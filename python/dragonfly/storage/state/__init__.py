"""Hot counters: admission (rate limits, concurrency leases, money holds) and settlement.

`ports.StateStore` is the interface; `memory.MemoryStateStore` is the embedded default (one data-plane
worker). Several workers or instances need a shared store (Redis).
"""
