"""terraform/ applied and destroyed for real, against moto's AWS emulator on loopback.

Needs the terraform binary, moto (requirements-dev.txt) and a local provider mirror with
hashicorp/aws (/opt/tf-plugins holds 5.100.0; the registry is unreachable). Skipped, with the
reason, only when that mirror is absent. A copy of terraform/ gets two test-only patches, each
asserted to match exactly once: a versions_override.tf accepting 5.100.0 (production keeps
~> 6.28), and no `invoked_via_function_url`, which 5.100 does not know. A provider override
points every endpoint at moto with fake keys: nothing here can reach real AWS.

The flow is scripts/deploy.sh's: apply only the ECR resources (-target), push an image (here:
an image manifest put straight into moto's ECR, with MOTO_LAMBDA_STUB_ECR=false so moto's
Lambda refuses an image that is not in its ECR), apply the whole stack pinned to the pushed
digest; then the other auth modes (public NONE, NONE with an API key in Secrets Manager or
SSM); each state checked through boto3; destroy, and nothing may remain. Then the optional bulk
function (bulk.tf): its own image, role, S3 object grants and reserved concurrency. Then AWS Batch
(batch.tf, enable_batch): its queue, compute environments, job definition, roles and network, and a
job submitted to it as embed-corpus does (moto's Batch with use_docker off: no container starts).
A third patch renames the compute environments' `name` (provider 6) to 5.100's
`compute_environment_name`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import MotoServer
from corpus_helpers import AWS_TEST_ENV, run_cli
from embedding_client.workers.batch_interface import EXIT_BAD_INPUT, RUN_COMMAND

ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
MIRRORED_AWS = MIRROR / "registry.terraform.io" / "hashicorp" / "aws"
REGION = "us-east-1"
NAME = "embedding-apply-test"
REPOSITORY = "embedding_apply_test"
ENDPOINTS = ("batch", "ec2", "ecr", "iam", "lambda", "logs", "secretsmanager", "ssm", "sts")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MIRRORED_AWS.is_dir(), reason=f"no hashicorp/aws provider mirror at {MIRRORED_AWS}"),
]


def mirrored_version() -> str:
    versions = sorted(p.name for p in MIRRORED_AWS.iterdir() if p.is_dir())
    assert versions, f"{MIRRORED_AWS} holds no provider version"
    return versions[-1]


def patch_once(path: Path, old: str, new: str) -> None:
    """Replace `old` by `new`; the patch must match exactly once, or terraform/ moved under it."""
    text = path.read_text()
    assert text.count(old) == 1, f"test patch expected exactly one {old!r} in {path.name}, found {text.count(old)}"
    path.write_text(text.replace(old, new))


def ecr_targets() -> list[str]:
    """The resources deploy.sh applies first, read from the script so the two never drift."""
    match = re.search(r"^ecr_targets=\(([^)]*)\)", (ROOT / "scripts" / "deploy.sh").read_text(), re.M)
    assert match, "scripts/deploy.sh no longer defines ecr_targets=(...)"
    return match.group(1).split()


class Terraform:
    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir, self.env = workdir, env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["terraform", f"-chdir={self.workdir}", *args, "-no-color"],
            env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )
        if check:
            assert result.returncode == 0, f"terraform {' '.join(args)}:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        return result

    def apply(self, *args: str) -> None:
        self("apply", "-input=false", "-auto-approve", "-parallelism=4", *args)

    def outputs(self) -> dict[str, str]:
        """Every output at once (each terraform run starts the ~0.7 GB provider: seconds)."""
        return {name: output["value"] for name, output in json.loads(self("output", "-json").stdout).items()}


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto-tf") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def terraform(tmp_path_factory, moto):
    if shutil.which("terraform") is None:
        pytest.fail("the provider mirror is here but the terraform binary is not on PATH")
    workdir = tmp_path_factory.mktemp("terraform")
    for source in (ROOT / "terraform").glob("*.tf"):
        shutil.copy(source, workdir / source.name)
    version = mirrored_version()
    # Patch 1: accept the mirrored provider. The override file replaces exactly one constraint,
    # production's, which stays as it is in terraform/.
    constraint = 'version = "~> 6.28"'
    assert (workdir / "versions.tf").read_text().count(constraint) == 1, f"versions.tf no longer says {constraint}"
    (workdir / "versions_override.tf").write_text(
        f'terraform {{\n  required_providers {{\n    aws = {{\n      source  = "hashicorp/aws"\n'
        f'      version = "{version}"\n    }}\n  }}\n}}\n'
    )
    # Patch 2: 5.100 does not know the argument (6.28 added it).
    patch_once(workdir / "lambda.tf", "  invoked_via_function_url = true\n", "")
    # Patch 3: provider 6 renamed aws_batch_compute_environment's compute_environment_name to name.
    name = '"${var.function_name}-batch-${lower(replace(each.key, "_", "-"))}"\n'
    patch_once(workdir / "batch.tf", f"  name         = {name}", f"  compute_environment_name = {name}")
    endpoints = "\n".join(f'    {service} = "{moto.url}"' for service in ENDPOINTS)
    (workdir / "provider_override.tf").write_text(
        f'provider "aws" {{\n  access_key = "testing"\n  secret_key = "testing"\n'
        f"  skip_credentials_validation = true\n  skip_requesting_account_id = true\n"
        f"  skip_metadata_api_check = true\n  endpoints {{\n{endpoints}\n  }}\n}}\n"
    )
    cli_config = workdir / "terraform.rc"
    cli_config.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{MIRROR}"\n'
        f'    include = ["registry.terraform.io/hashicorp/aws"]\n  }}\n}}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(TF_CLI_CONFIG_FILE=str(cli_config), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION=REGION,
               AWS_EC2_METADATA_DISABLED="true",
               TF_VAR_region=REGION, TF_VAR_function_name=NAME, TF_VAR_repository_name=REPOSITORY)
    return Terraform(workdir, env)


def push_image(moto: MotoServer, tag: str = "latest") -> str:
    """What deploy.sh's push leaves behind: an image in ECR; returns its digest."""
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                   "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()},
        "layers": [],
    })
    ecr = moto.client("ecr", REGION)
    ecr.put_image(repositoryName=REPOSITORY, imageManifest=manifest, imageTag=tag)
    (image,) = ecr.describe_images(repositoryName=REPOSITORY, imageIds=[{"imageTag": tag}])["imageDetails"]
    return image["imageDigest"]


def policy_statements(moto: MotoServer) -> dict[str, dict]:
    lam = moto.client("lambda", REGION)
    try:
        policy = json.loads(lam.get_policy(FunctionName=NAME)["Policy"])
    except lam.exceptions.ResourceNotFoundException:
        return {}
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def role_policies(moto: MotoServer, role: str = f"{NAME}-lambda") -> dict[str, dict]:
    iam = moto.client("iam", REGION)
    return {name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]}


def s3_statements(moto: MotoServer) -> list[dict]:
    """Every statement of every inline policy of our roles that names an S3 action."""
    iam = moto.client("iam", REGION)
    found = []
    for role in (r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(NAME)):
        for document in role_policies(moto, role).values():
            found += [s for s in document["Statement"] if "s3:" in json.dumps(s.get("Action", ""))]
    return found


def check_stack(moto: MotoServer, digest: str, auth: str) -> dict:
    """Every resource, as AWS (moto) reports it; returns the function's environment."""
    ecr, lam, iam, logs = (moto.client(s, REGION) for s in ("ecr", "lambda", "iam", "logs"))
    (repo,) = ecr.describe_repositories(repositoryNames=[REPOSITORY])["repositories"]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo["imageTagMutability"] == "MUTABLE"
    rules = json.loads(ecr.get_lifecycle_policy(repositoryName=REPOSITORY)["lifecyclePolicyText"])["rules"]
    assert rules[0]["selection"]["countNumber"] == 5 and rules[0]["action"]["type"] == "expire"

    role = iam.get_role(RoleName=f"{NAME}-lambda")["Role"]
    assert "lambda.amazonaws.com" in json.dumps(role["AssumeRolePolicyDocument"])
    attached = iam.list_attached_role_policies(RoleName=f"{NAME}-lambda")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AWSLambdaBasicExecutionRole"]

    (group,) = [g for g in logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{NAME}")["logGroups"]
                if g["logGroupName"] == f"/aws/lambda/{NAME}"]  # not the bulk function's, <NAME>-bulk
    assert group["retentionInDays"] == 14

    config = lam.get_function(FunctionName=NAME)
    function = config["Configuration"]
    assert function["PackageType"] == "Image" and function["Role"] == role["Arn"]
    assert config["Code"]["ImageUri"] == f"{repo['repositoryUri']}@{digest}"
    assert (function["MemorySize"], function["Timeout"], function["Architectures"]) == (1769, 30, ["x86_64"])
    assert lam.get_function_concurrency(FunctionName=NAME)["ReservedConcurrentExecutions"] == 10
    # moto 5.2.5 does not keep LoggingConfig (tests/deploy/test_terraform.py checks the JSON log format).
    environment = function["Environment"]["Variables"]
    assert environment["EMBEDDING_BACKEND"] == "onnx" and environment["HF_HUB_OFFLINE"] == "1"

    url = lam.get_function_url_config(FunctionName=NAME)
    assert url["AuthType"] == auth and url["InvokeMode"] == "BUFFERED"
    statements = policy_statements(moto)
    ours = {"AllowPublicInvokeFunctionUrl", "AllowPublicInvokeViaFunctionUrl"}
    if auth == "NONE":
        assert ours <= set(statements), statements
        assert statements["AllowPublicInvokeFunctionUrl"]["Action"] == "lambda:InvokeFunctionUrl"
        assert statements["AllowPublicInvokeViaFunctionUrl"]["Action"] == "lambda:InvokeFunction"
    else:
        assert not ours & set(statements), statements
    return environment


def test_apply_every_auth_mode_then_destroy_leaves_nothing(terraform, moto):
    terraform("init", "-input=false", "-backend=false")
    terraform("validate")

    # deploy.sh, step by step: the repository first, then the image, then the stack on its digest.
    terraform.apply(*(f"-target={target}" for target in ecr_targets()))
    assert moto.client("lambda", REGION).list_functions()["Functions"] == []
    digest = push_image(moto)
    pinned = f"-var=image_digest={digest}"
    terraform.apply(pinned)
    environment = check_stack(moto, digest, "AWS_IAM")
    assert not {"API_KEY_SECRET_ARN", "API_KEY_SSM_PARAMETER"} & set(environment)
    assert environment["EMBEDDING_PRECISION"] == "fp32"
    assert role_policies(moto) == {}
    outputs = terraform.outputs()
    assert outputs["function_url"].startswith("https://") and "--aws-sigv4" in outputs["curl_example"]
    assert outputs["api_key_secret_arn"] == outputs["api_key_command"] == ""
    # By default: no bulk function, and no S3 grant to anyone.
    assert [f["FunctionName"] for f in moto.client("lambda", REGION).list_functions()["Functions"]] == [NAME]
    assert outputs["bulk_function_name"] == "" and s3_statements(moto) == []

    # Several models in one function (var.models): MODELS names their folders in the image, and the
    # image's MODEL_DIR is cleared, as the service requires.
    terraform.apply(pinned, '-var=models=["all-MiniLM-L6-v2","cross-encoder/ms-marco-MiniLM-L6-v2=ms-marco-MiniLM-L6-v2"]')
    environment = check_stack(moto, digest, "AWS_IAM")
    assert environment["MODELS"] == (
        "/models/all-MiniLM-L6-v2,cross-encoder/ms-marco-MiniLM-L6-v2=/models/ms-marco-MiniLM-L6-v2")
    assert environment["MODEL_DIR"] == ""

    # Public: NONE alone (and the int8 economy precision, as deploy.sh --precision int8 passes it).
    terraform.apply(pinned, "-var=function_url_auth_type=NONE", "-var=precision=int8")
    environment = check_stack(moto, digest, "NONE")
    assert environment["EMBEDDING_PRECISION"] == "int8" and not {"MODELS", "MODEL_DIR"} & set(environment)
    assert "Authorization" not in terraform.outputs()["curl_example"]

    # NONE with an API key Terraform generates in Secrets Manager.
    terraform.apply(pinned, "-var=function_url_auth_type=NONE", "-var=api_key_source=secretsmanager")
    environment = check_stack(moto, digest, "NONE")
    outputs = terraform.outputs()
    arn = outputs["api_key_secret_arn"]
    assert environment["API_KEY_SECRET_ARN"] == arn
    key = moto.client("secretsmanager", REGION).get_secret_value(SecretId=arn)["SecretString"]
    assert re.fullmatch(r"[A-Za-z0-9]{48}", key), "a generated key: 48 letters and digits"
    (policy,) = role_policies(moto).values()
    assert policy["Statement"] == [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}]
    assert 'Authorization: Bearer $API_KEY' in outputs["curl_example"] and arn in outputs["api_key_command"]

    # NONE with a key given by the caller, in an SSM SecureString.
    given = "sk-given-" + "0123456789abcdef" * 2
    terraform.apply(pinned, "-var=function_url_auth_type=NONE", "-var=api_key_source=ssm",
                    f"-var=api_key_value={given}")
    environment = check_stack(moto, digest, "NONE")
    arn = terraform.outputs()["api_key_secret_arn"]
    assert environment["API_KEY_SSM_PARAMETER"] == arn and "API_KEY_SECRET_ARN" not in environment
    parameter = moto.client("ssm", REGION).get_parameter(Name=arn, WithDecryption=True)["Parameter"]
    assert parameter["Type"] == "SecureString" and parameter["Value"] == given
    (policy,) = role_policies(moto).values()
    assert policy["Statement"] == [{"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": arn}]
    assert moto.client("secretsmanager", REGION).list_secrets()["SecretList"] == []

    # An existing secret, by ARN: nothing is created, the role may read exactly that one.
    existing = moto.client("secretsmanager", REGION).create_secret(Name="existing-key", SecretString=given)["ARN"]
    terraform.apply(pinned, "-var=function_url_auth_type=NONE", "-var=api_key_source=secretsmanager",
                    f"-var=api_key_secret_arn={existing}")
    assert check_stack(moto, digest, "NONE")["API_KEY_SECRET_ARN"] == existing
    assert [p["Name"] for p in moto.client("ssm", REGION).describe_parameters()["Parameters"]] == []
    (policy,) = role_policies(moto).values()
    assert policy["Statement"][0]["Resource"] == existing

    # A key behind AWS_IAM could never be presented (the header carries SigV4): refused at plan.
    refused = terraform("plan", "-input=false", pinned, "-var=api_key_source=ssm", check=False)
    assert refused.returncode != 0
    assert "api_key_source needs function_url_auth_type" in " ".join(refused.stderr.split())

    # Destroy: nothing of ours remains (the existing secret was never Terraform's).
    terraform("destroy", "-input=false", "-auto-approve", pinned, "-var=function_url_auth_type=NONE",
              "-var=api_key_source=secretsmanager", f"-var=api_key_secret_arn={existing}")
    assert_nothing_remains(moto)
    moto.client("secretsmanager", REGION).delete_secret(SecretId=existing, ForceDeleteWithoutRecovery=True)


def assert_nothing_remains(moto: MotoServer, secrets: tuple[str, ...] = ("existing-key",)) -> None:
    """`secrets`: those that were never Terraform's and may stay."""
    ecr, lam, iam, logs, sm, ssm = (moto.client(s, REGION)
                                    for s in ("ecr", "lambda", "iam", "logs", "secretsmanager", "ssm"))
    assert ecr.describe_repositories()["repositories"] == []
    assert lam.list_functions()["Functions"] == []
    assert [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(NAME)] == []
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"] == []
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/batch/")["logGroups"] == []
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == list(secrets)
    assert ssm.describe_parameters()["Parameters"] == []


def test_bulk_function_gets_its_image_its_concurrency_and_only_its_s3_objects(terraform, moto):
    """bulk.tf: <name>-bulk on the bulk image, its own reserved concurrency, a role that may get the
    input folder's objects and put the output folder's, and nothing else; the query stack unchanged."""
    terraform("init", "-input=false", "-backend=false")
    terraform.apply(*(f"-target={target}" for target in ecr_targets()))
    digest = push_image(moto)
    push_image(moto, "bulk")  # by its default tag (moto gives every image the same digest)
    pinned = [f"-var=image_digest={digest}", "-var=bulk_function_enabled=true",
              "-var=bulk_reserved_concurrent_executions=25"]
    lam, iam, logs = (moto.client(s, REGION) for s in ("lambda", "iam", "logs"))
    bulk, role = f"{NAME}-bulk", f"{NAME}-bulk-lambda"

    # Enabled without prefixes: the function and its role, no S3 grant at all.
    terraform.apply(*pinned)
    check_stack(moto, digest, "AWS_IAM")
    assert role_policies(moto, role) == {} and s3_statements(moto) == []
    assert terraform.outputs()["bulk_function_name"] == bulk

    # One input and one output folder (both spellings): exactly GetObject and PutObject below them.
    terraform.apply(*pinned, '-var=bulk_input_prefixes=["corpus-bucket/corpus"]',
                    '-var=bulk_output_prefixes=["s3://vectors-bucket/vectors/"]')
    environment = check_stack(moto, digest, "AWS_IAM")  # the query function is as it was
    assert role_policies(moto) == {}
    (policy,) = role_policies(moto, role).values()
    assert sorted((s["Effect"], s["Action"], s["Resource"]) for s in policy["Statement"]) == [
        ("Allow", "s3:GetObject", "arn:aws:s3:::corpus-bucket/corpus/*"),
        ("Allow", "s3:PutObject", "arn:aws:s3:::vectors-bucket/vectors/*"),
    ]
    assert len(s3_statements(moto)) == 2, "the S3 grants are the bulk role's alone"

    config = lam.get_function(FunctionName=bulk)
    function = config["Configuration"]
    ecr = moto.client("ecr", REGION)
    (repository,) = ecr.describe_repositories(repositoryNames=[REPOSITORY])["repositories"]
    assert config["Code"]["ImageUri"] == f"{repository['repositoryUri']}:bulk"
    assert function["PackageType"] == "Image"
    query_role = lam.get_function(FunctionName=NAME)["Configuration"]["Role"]
    assert function["Role"] == iam.get_role(RoleName=role)["Role"]["Arn"] != query_role
    assert (function["MemorySize"], function["Timeout"], function["Architectures"]) == (1769, 900, ["x86_64"])
    assert lam.get_function_concurrency(FunctionName=bulk)["ReservedConcurrentExecutions"] == 25
    assert lam.get_function_concurrency(FunctionName=NAME)["ReservedConcurrentExecutions"] == 10
    assert function["Environment"]["Variables"] == environment
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AWSLambdaBasicExecutionRole"]
    (group,) = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{bulk}")["logGroups"]
    assert group["retentionInDays"] == 14
    # No Function URL: embed-corpus invokes it directly.
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=bulk)

    # Both functions unreserved: a job could throttle live queries. A warning, not an error.
    warned = terraform("plan", "-input=false", *pinned, "-var=bulk_reserved_concurrent_executions=-1",
                       "-var=reserved_concurrent_executions=-1")
    assert "can throttle them" in " ".join((warned.stdout + warned.stderr).split())
    quiet = terraform("plan", "-input=false", *pinned)
    assert "can throttle them" not in " ".join((quiet.stdout + quiet.stderr).split())

    terraform("destroy", "-input=false", "-auto-approve", *pinned)
    assert_nothing_remains(moto, secrets=())


def test_batch_queue_job_definition_roles_and_network_then_destroy(terraform, moto):
    """batch.tf: one queue, Fargate Spot before on-demand Fargate; the worker's job definition (its
    image by digest, command, size, retries, timeout, logs, public IP); an execution role that may pull
    and log, a job role with exactly the S3 grants asked for; a VPC with an S3 gateway endpoint and no
    NAT gateway. A job submitted as embed-corpus submits it gets the worker's command with the plan."""
    terraform("init", "-input=false", "-backend=false")
    terraform.apply(*(f"-target={target}" for target in ecr_targets()))
    digest = push_image(moto)
    batch_digest = push_image(moto, "batch")
    pinned = [f"-var=image_digest={digest}", "-var=enable_batch=true", f"-var=batch_image_digest={batch_digest}",
              "-var=batch_max_vcpus=64"]
    batch, iam, ec2, logs = (moto.client(s, REGION) for s in ("batch", "iam", "ec2", "logs"))
    queue, definition = f"{NAME}-batch", f"{NAME}-batch-worker"

    httpx.post(f"{moto.url}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10).raise_for_status()
    s3 = moto.client("s3", REGION)
    for bucket in ("corpus-bucket", "vectors-bucket"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="corpus-bucket", Key="corpus/a.jsonl", Body=b'{"text": "hello"}\n{"text": "world"}\n')
    client = ["s3://corpus-bucket/corpus/", "--output", "s3://vectors-bucket/vectors/", "--target", f"batch://{queue}"]
    client_env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto.url}

    # Enabled without prefixes: every resource, but no S3 grant at all, so embed-corpus refuses the run
    # before it submits anything.
    terraform.apply(*pinned)
    check_stack(moto, digest, "AWS_IAM")
    assert s3_statements(moto) == [] and role_policies(moto, f"{NAME}-batch-job") == {}
    outputs = terraform.outputs()
    assert (outputs["batch_job_queue_name"], outputs["batch_job_definition_name"]) == (queue, definition)
    assert outputs["bulk_function_name"] == ""
    refused = run_cli(*client, "--batch-job-definition", definition, "--detach", env=client_env)
    assert refused.returncode != 0 and f"{NAME}-batch-job" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and batch.list_jobs(jobQueue=queue)["jobSummaryList"] == []

    terraform.apply(*pinned, '-var=batch_input_prefixes=["corpus-bucket/corpus"]',
                    '-var=batch_output_prefixes=["s3://vectors-bucket/vectors/"]')
    # What AWS (moto) gives back for the Batch resources matches the configuration: a second plan of them
    # (and all they depend on) changes nothing.
    settled = terraform("plan", "-input=false", "-detailed-exitcode", *pinned, "-target=aws_batch_job_queue.this",
                        "-target=aws_batch_job_definition.worker", "-target=aws_iam_role_policy.batch_s3",
                        '-var=batch_input_prefixes=["corpus-bucket/corpus"]',
                        '-var=batch_output_prefixes=["s3://vectors-bucket/vectors/"]', check=False)
    assert settled.returncode == 0, settled.stdout[-3000:] + settled.stderr[-2000:]
    # With the grants, the client's own checks accept the queue, the job definition and its role.
    detached = run_cli(*client, "--batch-job-definition", definition, "--detach", env=client_env)
    assert detached.returncode == 0, detached.stderr
    (policy,) = role_policies(moto, f"{NAME}-batch-job").values()
    statements = sorted(policy["Statement"], key=lambda s: s["Sid"])
    assert [(s["Sid"], sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"]), s["Resource"])
            for s in statements] == [
        ("ListOutputFolder0", ["s3:ListBucket"], "arn:aws:s3:::vectors-bucket"),
        ("ReadInputObjects", ["s3:GetObject"], "arn:aws:s3:::corpus-bucket/corpus/*"),
        ("ReadWriteOutputObjects", ["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::vectors-bucket/vectors/*"),
    ]
    assert statements[0]["Condition"] == {"StringLike": {"s3:prefix": "vectors/*"}}
    assert len(s3_statements(moto)) == 3, "the S3 grants are the job role's alone"

    # The queue: Fargate Spot first, on-demand Fargate second, both at batch_max_vcpus.
    (described,) = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    assert described["state"] == "ENABLED"
    order = sorted(described["computeEnvironmentOrder"], key=lambda o: o["order"])
    environments = {e["computeEnvironmentArn"]: e for e in batch.describe_compute_environments()["computeEnvironments"]}
    kinds = [environments[o["computeEnvironment"]]["computeResources"]["type"] for o in order]
    assert kinds == ["FARGATE_SPOT", "FARGATE"]
    names = [environments[o["computeEnvironment"]]["computeEnvironmentName"] for o in order]
    assert names == [f"{queue}-fargate-spot", f"{queue}-fargate"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [f"{queue}-*"]}])["Subnets"]
    assert len(subnets) == 3 and len({s["AvailabilityZone"] for s in subnets}) == 3
    (vpc_id,) = {s["VpcId"] for s in subnets}
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{queue}-workers"]}])[
        "SecurityGroups"]
    for environment in environments.values():
        resources = environment["computeResources"]
        assert environment["serviceRole"] == iam.get_role(RoleName=f"{NAME}-batch-service")["Role"]["Arn"]
        assert resources["maxvCpus"] == 64
        assert sorted(resources["subnets"]) == sorted(s["SubnetId"] for s in subnets)
        assert resources["securityGroupIds"] == [group["GroupId"]]
    assert group["IpPermissions"] == []
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["IpPermissionsEgress"]] == [("tcp", 443, 443)]
    # S3 through a gateway endpoint on the subnets' route table, the rest through the internet
    # gateway with a public IP: no NAT gateway.
    (endpoint,) = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]
    assert (endpoint["ServiceName"], endpoint["VpcEndpointType"]) == (f"com.amazonaws.{REGION}.s3", "Gateway")
    (table,) = ec2.describe_route_tables(RouteTableIds=endpoint["RouteTableIds"])["RouteTables"]
    assert {a["SubnetId"] for a in table["Associations"]} == {s["SubnetId"] for s in subnets}
    assert any(r.get("GatewayId", "").startswith("igw-") for r in table["Routes"])
    assert ec2.describe_nat_gateways()["NatGateways"] == []

    # The job definition, as the client submits against it.
    (job_definition,) = batch.describe_job_definitions(jobDefinitionName=definition, status="ACTIVE")["jobDefinitions"]
    container = job_definition["containerProperties"]
    (repository,) = moto.client("ecr", REGION).describe_repositories(repositoryNames=[REPOSITORY])["repositories"]
    assert container["image"] == f"{repository['repositoryUri']}@{batch_digest}"
    assert container["command"] == RUN_COMMAND
    assert job_definition["platformCapabilities"] == ["FARGATE"]
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {"VCPU": "2", "MEMORY": "4096"}
    assert container["networkConfiguration"] == {"assignPublicIp": "ENABLED"}
    assert container["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "EMBEDDING_BACKEND": "onnx", "EMBEDDING_PRECISION": "fp32", "HF_HUB_OFFLINE": "1"}
    log_options = container["logConfiguration"]["options"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert log_options["awslogs-group"] == f"/aws/batch/{definition}"
    (log_group,) = logs.describe_log_groups(logGroupNamePrefix=f"/aws/batch/{definition}")["logGroups"]
    assert log_group["retentionInDays"] == 14
    assert container["jobRoleArn"] == iam.get_role(RoleName=f"{NAME}-batch-job")["Role"]["Arn"]
    assert container["executionRoleArn"] == iam.get_role(RoleName=f"{NAME}-batch-execution")["Role"]["Arn"]
    assert job_definition["timeout"] == {"attemptDurationSeconds": 3600}
    retry = job_definition["retryStrategy"]
    assert retry["attempts"] == 3
    rules = [(r["action"].upper(), r.get("onStatusReason"), r.get("onExitCode")) for r in retry["evaluateOnExit"]]
    assert rules == [("RETRY", "Host EC2*", None), ("RETRY", "Your Spot Task was interrupted*", None),
                     ("EXIT", None, str(EXIT_BAD_INPUT))]
    # The execution role pulls from this repository and writes this log group, nothing else.
    (execution,) = role_policies(moto, f"{NAME}-batch-execution").values()
    granted = {s["Sid"]: s["Resource"] for s in execution["Statement"]}
    assert granted == {"EcrLogin": "*", "PullWorkerImage": repository["repositoryArn"],
                       "WriteWorkerLogs": f"{log_group['arn'].removesuffix(':*')}:*"}
    attached = iam.list_attached_role_policies(RoleName=f"{NAME}-batch-service")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AWSBatchServiceRole"]

    # Refused at plan, each in one sentence: a task size Fargate does not offer; subnets without groups.
    for bad, message in ((["-var=batch_vcpus=4", "-var=batch_memory=4096"], "batch_memory does not fit batch_vcpus"),
                         (['-var=batch_subnet_ids=["subnet-0123abcd"]'], "batch_subnet_ids needs batch_security_group_ids")):
        refused = terraform("plan", "-input=false", *pinned, *bad, check=False)
        assert refused.returncode != 0 and message in " ".join(refused.stderr.split()), refused.stderr

    # Submitted as embed-corpus submits: an array job with the plan parameter (no container runs).
    plan = "s3://vectors-bucket/vectors/_embed-corpus-batch/plan.json"
    job = batch.submit_job(jobName="embed-corpus-test", jobQueue=queue, jobDefinition=definition,
                           arrayProperties={"size": 2}, parameters={"plan": plan})
    (submitted,) = batch.describe_jobs(jobs=[job["jobId"]])["jobs"]
    assert submitted["jobQueue"].endswith(f":job-queue/{queue}") and submitted["arrayProperties"]["size"] == 2
    assert submitted["parameters"] == {"plan": plan}
    batch.terminate_job(jobId=job["jobId"], reason="test done")

    terraform("destroy", "-input=false", "-auto-approve", *pinned)
    assert_nothing_remains(moto, secrets=())
    assert batch.describe_job_queues()["jobQueues"] == []
    assert batch.describe_compute_environments()["computeEnvironments"] == []
    assert batch.describe_job_definitions(jobDefinitionName=definition, status="ACTIVE")["jobDefinitions"] == []
    assert [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
