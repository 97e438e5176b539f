"""Background jobs, run as asyncio tasks in the control plane (admission probes first)."""
