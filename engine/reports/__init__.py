"""Reports built from the engine's logs for the people who pay for its treatments."""
