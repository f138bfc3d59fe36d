"""A plugin that ends the process while it is imported (for the bad-config corpus)."""

import os

os._exit(3)
