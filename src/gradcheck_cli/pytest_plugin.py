"""pytest plugin (entry point ``pytest11``): collects gradcheck configs when asked."""
