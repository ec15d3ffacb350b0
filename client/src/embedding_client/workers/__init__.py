"""Workers: where shard jobs run beside the model (a Lambda bulk function, an AWS Batch child).

They need the service package (`embedding-client[local]`): each runs the client's own shard job
code (`corpus.shard_job`) on the service's model layer, in the worker's process.
"""
