"""`--target batch://JOB_QUEUE`: an AWS Batch queue and job definition that run shard jobs.

Not an embedding target (nothing is embedded through it): it checks, before anything is
submitted, that the queue and the job definition exist and that we may use Batch, reads what
prices a run (the queue's first compute environment: Fargate Spot, Fargate or EC2; the job's
vCPUs and memory), checks the job role's S3 grants (iam_grants.py), then submits array jobs and
describes them. Every refusal is one sentence naming what to fix.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from embedding_client.corpus import iam_grants
from embedding_client.corpus.errors import CorpusError, InputError, PermanentError, TransientError
from embedding_client.corpus.locations import Location
from embedding_client.workers.batch_interface import CHILD_OFFSET_ENV, PLAN_PARAMETER, finish_command

ARRAY_MAX = 10_000  # AWS Batch's largest array job
ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
_CREDENTIAL_CODES = ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                     "InvalidSignatureException", "ExpiredTokenException", "UnauthorizedOperation")


@dataclass(frozen=True)
class JobShape:
    """What one child gets, from the job definition: prices a run."""

    vcpus: float
    memory_mb: int
    job_role_arn: str | None
    engine: str  # FARGATE_SPOT | FARGATE | SPOT | EC2: the queue's first compute environment


class BatchQueue:
    def __init__(self, queue: str, job_definition: str, region: str | None):
        import boto3

        if not queue or "/" in queue:
            raise InputError("--target batch://JOB_QUEUE needs a job queue name after batch://")
        session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
        if session.region_name is None:
            raise InputError("no AWS region for the Batch queue: pass --region or set AWS_REGION")
        self.queue, self.job_definition, self.region = queue, job_definition, session.region_name
        self._batch = session.client("batch")
        from botocore.config import Config

        self._iam = session.client("iam", config=Config(retries={"total_max_attempts": 2}))
        self.max_vcpus: int | None = None  # the first compute environment's maxvCpus
        self.shape = self._probe()

    # --- before anything is submitted ---------------------------------------------------------

    def _call(self, operation: str, what: str, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return getattr(self._batch, operation)(**kwargs)
        except NoCredentialsError:
            raise InputError("no AWS credentials for AWS Batch: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            message = error.response.get("Error", {}).get("Message") or code
            if code in _CREDENTIAL_CODES:
                raise InputError(f"no Batch permission: AWS refused batch:{operation_name(operation)} on {what} "
                                 f"({code}): grant it to these credentials") from None
            raise CorpusError(f"AWS Batch failed on {what}: {code}: {message}") from None
        except BotoCoreError as error:
            raise CorpusError(f"cannot reach AWS Batch in {self.region}: {error}") from None

    def _probe(self) -> JobShape:
        queues = self._call("describe_job_queues", f"job queue {self.queue}", jobQueues=[self.queue])["jobQueues"]
        if not queues:
            raise InputError(f"--target batch://{self.queue}: no such job queue in {self.region} (scripts/deploy.sh "
                             "deploy --batch prints the queue's name)")
        queue = queues[0]
        if queue.get("state") != "ENABLED":
            raise InputError(f"--target batch://{self.queue}: the job queue is {queue.get('state')}: enable it first")
        definitions = self._call(
            "describe_job_definitions", f"job definition {self.job_definition}",
            jobDefinitionName=self.job_definition, status="ACTIVE",
        )["jobDefinitions"]
        if not definitions:
            raise InputError(f"--batch-job-definition {self.job_definition}: no active job definition of that name in "
                             f"{self.region} (scripts/deploy.sh deploy --batch prints its name)")
        definition = max(definitions, key=lambda item: item.get("revision", 0))
        container = definition.get("containerProperties") or {}
        vcpus, memory = float(container.get("vcpus") or 1), int(container.get("memory") or 2048)
        for requirement in container.get("resourceRequirements") or []:
            if requirement.get("type") == "VCPU":
                vcpus = float(requirement["value"])
            elif requirement.get("type") == "MEMORY":
                memory = int(requirement["value"])
        return JobShape(vcpus, memory, container.get("jobRoleArn"), self._engine(queue))

    def _engine(self, queue: dict) -> str:
        order = sorted(queue.get("computeEnvironmentOrder") or [], key=lambda item: item.get("order", 0))
        if not order:
            return "FARGATE_SPOT"
        first = order[0]["computeEnvironment"]
        found = self._call("describe_compute_environments", f"compute environment {first}", computeEnvironments=[first])
        environments = found.get("computeEnvironments") or []
        resources = (environments[0].get("computeResources") or {}) if environments else {}
        self.max_vcpus = resources.get("maxvCpus")
        return str(resources.get("type") or "FARGATE_SPOT")

    def check_grants(self, first_input: Location, output: Location) -> None:
        """The job role may read INPUT and write under OUTPUT; else one sentence naming the grant."""
        role = self.shape.job_role_arn
        if not role:
            raise InputError(f"--batch-job-definition {self.job_definition} has no job role, so its children can't "
                             "reach S3: set jobRoleArn (terraform/batch.tf's job role)")
        asks = [("s3:GetObject", first_input, "read INPUT"), ("s3:PutObject", output.child("part-000000.parquet"), "write under OUTPUT")]
        for action, where, why in asks:
            try:
                ok = iam_grants.allowed(self._iam, role, action, iam_grants.s3_arn(where.bucket, where.key))
            except Exception as error:  # we may not read IAM: the children will say it instead
                code = str(((getattr(error, "response", None) or {}).get("Error") or {}).get("Code", type(error).__name__))
                raise InputError(f"can't check the job role {iam_grants.role_name(role)}'s S3 grants ({code}): grant these "
                                 "credentials iam:SimulatePrincipalPolicy or iam:GetRole and iam:List*/Get*Policy*") from None
            if not ok:
                raise InputError(
                    f"the job role {iam_grants.role_name(role)} of {self.job_definition} lacks the S3 grants to {why} "
                    f"({action} on {where.uri}): add the prefix to terraform's batch input/output prefixes and apply"
                )

    # --- submitting and following -------------------------------------------------------------

    def submit(self, name: str, plan_uri: str, children: int) -> dict:
        """One array job per 10,000 children (a single job for one), then the final job after them."""
        arrays = []
        for offset in range(0, children, ARRAY_MAX):
            size = min(ARRAY_MAX, children - offset)
            request = {
                "jobName": f"{name}-{offset // ARRAY_MAX}",
                "jobQueue": self.queue,
                "jobDefinition": self.job_definition,
                "parameters": {PLAN_PARAMETER: plan_uri},
                "containerOverrides": {"environment": [{"name": CHILD_OFFSET_ENV, "value": str(offset)}]},
            }
            if size > 1:
                request["arrayProperties"] = {"size": size}
            arrays.append(self._call("submit_job", f"job queue {self.queue}", **request)["jobId"])
        final = self._call(
            "submit_job", f"job queue {self.queue}",
            jobName=f"{name}-finish", jobQueue=self.queue, jobDefinition=self.job_definition,
            parameters={PLAN_PARAMETER: plan_uri}, dependsOn=[{"jobId": job} for job in arrays],
            containerOverrides={"command": finish_command(plan_uri)},
        )["jobId"]
        return {"plan": plan_uri, "arrays": arrays, "children": children, "final": final, "submitted_at": time.time()}

    def describe(self, job_ids: list[str]) -> dict[str, dict]:
        """Job id -> its description (status, statusReason, arrayProperties.statusSummary)."""
        found: dict[str, dict] = {}
        for start in range(0, len(job_ids), 100):
            try:
                jobs = self._call("describe_jobs", "jobs", jobs=job_ids[start : start + 100])["jobs"]
            except InputError as error:
                raise PermanentError(str(error)) from None
            except CorpusError as error:
                raise TransientError(str(error)) from None
            found.update({job["jobId"]: job for job in jobs})
        return found


def operation_name(operation: str) -> str:
    return "".join(word.capitalize() for word in operation.split("_"))
