"""Pure business logic: no I/O, imports nothing from gateway/, api/ or storage/."""
