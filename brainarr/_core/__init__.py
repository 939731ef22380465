"""Private core of brainarr: dims, options, validation, metadata and chunk helpers."""
