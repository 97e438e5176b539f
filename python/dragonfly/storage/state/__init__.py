"""Hot counters: admission (rate limits, concurrency leases, money holds) and settlement.

`ports.StateStore` is the interface (and the money model); `memory.MemoryStateStore` is the embedded
default (one data-plane worker), `redis.RedisStateStore` the shared store for several instances (one Lua
script per admission, per settlement and per re-seed, in `lua/`). `factory.make_state_store` picks one
from Settings; `seeding` reads the database values they are re-seeded from.
"""
