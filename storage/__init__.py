"""Storage: rows and keys, not guides or platforms. One async protocol, many backends."""
