"""Helpers the end-to-end tests share: real clusters as processes, HTTP and CLI helpers, catalog files."""
