"""Thin handlers, one module per resource: parse the body, call one service function, return its result."""
