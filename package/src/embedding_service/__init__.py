"""The embedding service: the model layer, the kinds of model, and one route table.

The FastAPI app (`embedding_service.main:app`) and the Lambda handler
(`embedding_service.lambda_function.handler`) are both built from it. This package never
imports `embedding_client`: the client depends on the service, never the other way round.
"""
