"""Request bodies of the control plane (pydantic v2). Unknown fields are refused, not ignored."""
