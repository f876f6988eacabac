"""Route modules; each exposes ``router``. Route functions stay thin: parse, call storage, shape."""
