"""Client side of the embedding service.

Runs on the user's machine, never in the service: request signing for a Lambda Function URL,
helpers that point OpenAI-compatible clients and RAG frameworks at a deployment, and the
bulk `embed-corpus` command.
"""

__version__ = "0.1.0"
