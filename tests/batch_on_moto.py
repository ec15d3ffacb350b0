"""AWS Batch on moto for the tests: a queue whose job definitions run the worker, and a submitted
job's command and environment exactly as Batch would start it. Batch's `use_docker` is off, so moto
accepts and finishes jobs without starting anything; the tests start each job themselves (in the
venv, or in the worker image under podman)."""

from __future__ import annotations

import json

import httpx

from embedding_client.workers.batch_interface import RUN_COMMAND

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


class BatchOnMoto:
    """A bucket, and a queue on a Fargate Spot environment with a job definition per entry of
    `definitions` (name -> whether its job role may read and write the bucket)."""

    def __init__(self, moto, tag: str, image: str, definitions: dict[str, bool]):
        self.moto = moto
        httpx.post(f"{moto.url}/moto-api/config", json={"batch": {"use_docker": False}}).raise_for_status()
        self.s3, self.batch, iam, ec2 = (moto.client(name) for name in ("s3", "batch", "iam", "ec2"))
        self.bucket, self.queue = f"batch-{tag}", f"queue-{tag}"
        self.s3.create_bucket(Bucket=self.bucket)
        roles = {}
        for name, granted in definitions.items():
            roles[name] = iam.create_role(RoleName=f"job-{name}", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
            if granted:
                iam.put_role_policy(RoleName=f"job-{name}", PolicyName="s3", PolicyDocument=json.dumps({
                    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                                                            "Resource": f"arn:aws:s3:::{self.bucket}/*"}]}))
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName=f"g-{tag}", Description="workers", VpcId=vpc)["GroupId"]
        environment = self.batch.create_compute_environment(
            computeEnvironmentName=f"spot-{tag}", type="MANAGED", state="ENABLED", serviceRole=next(iter(roles.values())),
            computeResources={"type": "FARGATE_SPOT", "maxvCpus": 1000, "subnets": [subnet], "securityGroupIds": [group]},
        )["computeEnvironmentArn"]
        self.batch.create_job_queue(jobQueueName=self.queue, state="ENABLED", priority=1,
                                    computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}])
        for name, role in roles.items():
            self.batch.register_job_definition(
                jobDefinitionName=name, type="container", platformCapabilities=["FARGATE"],
                containerProperties={"image": image, "command": RUN_COMMAND, "jobRoleArn": role, "executionRoleArn": role,
                                     "resourceRequirements": [{"type": "VCPU", "value": "2"},
                                                              {"type": "MEMORY", "value": "4096"}]})


def as_batch_starts(job: dict, index: int | None, attempt: int, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """A submitted job's command after Ref:: substitution, and `env` plus what Batch sets: the job's
    environment overrides, AWS_BATCH_JOB_ID, AWS_BATCH_JOB_ATTEMPT and, for an array child, its index."""
    parameters = job.get("parameters") or {}
    command = [parameters.get(word[5:], word) if word.startswith("Ref::") else word for word in job["container"]["command"]]
    env = {**env, **{item["name"]: item["value"] for item in job["container"].get("environment", [])},
           "AWS_BATCH_JOB_ID": job["jobId"] + ("" if index is None else f":{index}"), "AWS_BATCH_JOB_ATTEMPT": str(attempt)}
    if index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(index)
    return command, env
