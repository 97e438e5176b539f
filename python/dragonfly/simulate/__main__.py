"""`python -m dragonfly.simulate SCENARIO.toml`."""

from dragonfly.simulate.cli import simulate

if __name__ == "__main__":
    simulate(prog_name="python -m dragonfly.simulate")
