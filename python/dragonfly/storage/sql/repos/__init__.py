"""Repositories: every SQL statement of the product lives in this package, one module per aggregate."""
