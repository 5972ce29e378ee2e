"""Media shared by the deployables: safe decoding of untrusted image bytes, generation-pinned
downloads, and the exception hierarchy they raise. No torch, no FastAPI: the inference service,
the console and the slide service all depend on it."""
