"""Storage: the system of record (sql/) and hot counters (state/)."""
