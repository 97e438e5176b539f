"""I/O orchestration shared by the control-plane handlers, the CLI and demo seeding.

Each function takes its resources (database, settings, crypto helpers) as arguments, runs the writes of one
business action in one transaction, and returns plain dicts shaped like the API's responses.
"""
