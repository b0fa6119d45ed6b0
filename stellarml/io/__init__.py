"""Input and output: specutils loaders and the ASDF model format."""
