"""`embed-corpus`: embed a whole corpus into Parquet, locally, over HTTP or fanned out over Lambda.

A pipeline of small parts with one job each:

    readers   (JSONL / CSV / Parquet / text, local or S3)  -> rows (line number, id, text)
    plan      rows -> shards (the unit of commit) -> requests that fit the target's limits
    targets   local (the model in-process) | http (OpenAI /v1/embeddings) | lambda (boto3 invoke)
    retry     the one place that retries, backs off and splits requests a target found too big
    shards    each finished shard committed atomically; --resume skips what is committed
    scheduler the one loop for every kind of shard work: the client's shards (embed_work) and the
              workers' split jobs (worker_jobs) are plans of tasks it sends, retries and commits
    runner    checks and opens everything, then hands a RunContext to client_run or worker_run;
              progress and report say what happened and what it cost
"""
