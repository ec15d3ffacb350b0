"""What `embed-corpus --target batch://`, the `embed-corpus-worker` console script and the
Terraform's job definition (terraform/batch.tf) agree on: names, the command, exit codes, keys.

Defined once here so the client that submits, the child that runs and the retry strategy that
reads a child's exit code can never disagree.
"""

from __future__ import annotations

# The job definition's default name: `<function_name>-batch-worker`, with variables.tf's default
# function_name ("embedding-model"), as the Lambda bulk function is `<function_name>-bulk`.
DEFAULT_JOB_DEFINITION = "embedding-model-batch-worker"

CONSOLE_SCRIPT = "embed-corpus-worker"
PLAN_PARAMETER = "plan"  # the job definition's command is [CONSOLE_SCRIPT, "run", "Ref::plan"]
RUN_COMMAND = [CONSOLE_SCRIPT, "run", f"Ref::{PLAN_PARAMETER}"]


def finish_command(plan_uri: str) -> list[str]:
    """The final job's command (sent as a command override): check every part, write _SUCCESS."""
    return [CONSOLE_SCRIPT, "finish", plan_uri]


# Environment Batch sets in every child (absent index: a single, non-array job, child 0).
ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
JOB_ID_ENV = "AWS_BATCH_JOB_ID"
ATTEMPT_ENV = "AWS_BATCH_JOB_ATTEMPT"
# The client's environment override: the first child number of this array job in the plan, so a
# plan of more than 10,000 children spans several array jobs.
CHILD_OFFSET_ENV = "EMBED_CORPUS_CHILD_OFFSET"

# Exit codes. The job definition's retry strategy retries everything but EXIT_BAD_INPUT.
EXIT_DONE = 0
EXIT_FAILED = 1  # S3 or the model failing for now, a part missing at the final step: retry
EXIT_BAD_INPUT = 3  # bad rows or a malformed plan: a retry would fail alike (terraform/batch.tf exits on it)
EXIT_INTERRUPTED = 143  # 128 + SIGTERM: Spot's two-minute warning; the retry redoes what is missing
