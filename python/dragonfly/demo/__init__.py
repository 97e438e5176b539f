"""The demo seller: a small, deterministic OpenAI-compatible upstream on loopback.

`dragonfly serve --demo` lists it on the market so the product works out of the box, and the tests and
benchmarks use it as the fake seller. Import from `dragonfly.demo.seller` (`DemoSeller`, `SellerConfig`);
run it alone with `python -m dragonfly.demo.seller --port N`.
"""
