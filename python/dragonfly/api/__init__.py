"""The control plane: a Robyn app serving `/api/*`, `/v1/pool/*` and `/v1/market/*`.

`build_app(settings)` makes the app; `python -m dragonfly.api --host H --port P` runs it.
"""
