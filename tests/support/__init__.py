"""Test infrastructure: throwaway services, managed subprocesses, the demo seller launchers."""
