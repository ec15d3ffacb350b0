"""Static checks of terraform/: the deployment contract, variable validation, fmt and checkov.

`terraform validate` needs the AWS provider, which cannot be downloaded everywhere the tests
run, so the contract is checked on the parsed HCL (python-hcl2) instead. Variable validation is
checked twice: by evaluating the conditions in Python here, and, where the terraform binary
exists, by real Terraform on a provider-free copy of variables.tf.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

hcl2 = pytest.importorskip(
    "hcl2", reason="python-hcl2 is not installed (pip install -r requirements-dev.txt)"
)

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
CHECKOV = ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"

# Statement ids the AWS provider's aws_lambda_function_url adds by itself (outside the state)
# when it creates a URL with authorization_type NONE; ours must differ or AddPermission fails
# with ResourceConflictException.
PROVIDER_STATEMENT_IDS = {"FunctionURLAllowPublicAccess", "FunctionURLAllowInvokeAction"}

# retentionInDays values CloudWatch Logs accepts (0 = never expire).
CLOUDWATCH_RETENTION_DAYS = {
    0,
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
}


# ---------------------------------------------------------------------------------------------
# Parsing helpers (python-hcl2 8.x keeps the quotes of strings and labels, wraps expressions
# in ${...} and represents blocks as lists of dicts marked "__is_block__")
# ---------------------------------------------------------------------------------------------
def unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def expr(value: Any) -> str:
    """The text of an expression, without the ${ } wrapper."""
    assert isinstance(value, str), value
    if value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


def clean(value: Any) -> Any:
    """Recursively unquote strings and drop python-hcl2's bookkeeping keys."""
    if isinstance(value, dict):
        return {unquote(k): clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return unquote(value)


def load_config() -> dict[str, Any]:
    config: dict[str, Any] = {
        "terraform": [],
        "provider": {},
        "variable": {},
        "output": {},
        "locals": {},
        "resource": {},
        "data": {},
        "raw": {},
    }
    for path in sorted(TF_DIR.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        config["raw"][path.name] = parsed
        config["terraform"] += parsed.get("terraform", [])
        for block in parsed.get("provider", []):
            for name, body in block.items():
                config["provider"][unquote(name)] = body
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                for name, body in block.items():
                    assert unquote(name) not in config[kind], f"duplicate {kind} {name}"
                    config[kind][unquote(name)] = body
        for block in parsed.get("locals", []):
            config["locals"].update({k: v for k, v in block.items() if not k.startswith("__")})
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        config[kind][(unquote(rtype), unquote(name))] = body
    return config


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    return load_config()


def resources(cfg: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {name: body for (t, name), body in cfg["resource"].items() if t == rtype}


def only(cfg: dict[str, Any], rtype: str) -> dict[str, Any]:
    found = resources(cfg, rtype)
    assert len(found) == 1, f"expected exactly one {rtype}, found {sorted(found)}"
    return next(iter(found.values()))


def named(cfg: dict[str, Any], rtype: str, name: str) -> dict[str, Any]:
    """The query stack's resource of a type the bulk function (bulk.tf) has one of too."""
    found = resources(cfg, rtype)
    assert name in found, f"no {rtype}.{name}; found {sorted(found)}"
    return found[name]


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block, got {blocks!r}"
    return blocks[0]


def comments(body: dict[str, Any]) -> list[str]:
    return [c["value"] for c in body.get("__comments__", [])]


# ---------------------------------------------------------------------------------------------
# A small evaluator for the validation conditions (the subset of HCL they use)
# ---------------------------------------------------------------------------------------------
_FAIL = object()


def _regex(pattern: str, value: Any) -> Any:
    # Terraform's regex() fails when nothing matches (or the value is not a string); can() then
    # turns that into false. The patterns only use syntax that RE2 and Python share.
    if not isinstance(value, str):
        return _FAIL
    match = re.search(pattern, value)
    return match.group(0) if match else _FAIL


def _can(value: Any) -> bool:
    return value is not _FAIL


def _contains(collection: list[Any], value: Any) -> bool:
    return value in collection


def _cidrhost(prefix: Any, number: int) -> Any:
    # Terraform's cidrhost() fails on anything but an IP prefix (host bits may be set).
    try:
        return str(ipaddress.ip_network(prefix, strict=False)[number])
    except (TypeError, ValueError):
        return _FAIL


def condition_to_python(condition: str, var_name: str) -> str:
    text = expr(condition)
    text = re.sub(r"\[for (\w+) in (\S+) : (.*)\]", r"[\3 for \1 in \2]", text)
    text = text.replace(f"var.{var_name}", "__value")
    assert "var." not in text, f"validation of {var_name} refers to another variable: {text}"
    replacements = {
        "&&": " and ",
        "||": " or ",
        "alltrue(": "all(",
        "length(": "len(",
        "floor(": "_floor(",
        "keys(": "_keys(",
        "contains(": "_contains(",
        "can(": "_can(",
        "regex(": "_regex(",
        "cidrhost(": "_cidrhost(",
    }
    for hcl, python in replacements.items():
        text = text.replace(hcl, python)
    return text


def evaluate_validation(cfg: dict[str, Any], var_name: str, value: Any) -> bool:
    """True when `value` passes every validation block of variable `var_name`."""
    namespace = {
        "__value": value,
        "_regex": _regex,
        "_can": _can,
        "_contains": _contains,
        "_cidrhost": _cidrhost,
        "_floor": math.floor,
        "_keys": lambda m: list(m.keys()),
        "all": all,
        "len": len,
    }
    for validation in cfg["variable"][var_name].get("validation", []):
        python = condition_to_python(validation["condition"], var_name)
        # One globals dict: comprehensions (from HCL for-expressions) only see globals.
        if not eval(python, {"__builtins__": {}, **namespace}):
            return False
    return True


def default_of(cfg: dict[str, Any], var_name: str) -> Any:
    return clean(cfg["variable"][var_name]["default"])


# Values each validated variable must accept and reject (beyond its default).
VALIDATION_CASES: dict[str, tuple[list[Any], list[Any]]] = {
    "region": (
        ["eu-west-1", "us-gov-west-1", "cn-north-1", "ap-southeast-2"],
        ["Mars", "eu_west_1", "eu-west", ""],
    ),
    "function_name": (["embedding-model", "a", "x" * 64, "My_Func-2"], ["", "x" * 65, "bad name", "a.b"]),
    "repository_name": (
        ["embedding_model", "team/embedding-model", "ab"],
        ["Embedding", "a", "-lead", "trail-", "a//b"],
    ),
    "image_tag": (["latest", "v1.2.3", "_x"], ["", ".hidden", "-dash", "a" * 129, "with space"]),
    "image_digest": (
        ["", "sha256:" + "0123456789abcdef" * 4],
        ["sha256:xyz", "0123456789abcdef" * 4, "sha256:" + "A" * 64],
    ),
    "memory_size": ([128, 1769, 10240, 3008], [127, 10241, 0, 1769.5]),
    "timeout": ([1, 30, 900], [0, 901, 2.5]),
    "architecture": (["x86_64", "arm64"], ["amd64", "aarch64", "x86-64", "ARM64", ""]),
    "precision": (["fp32", "int8"], ["", "FP32", "int4", "fp16", "bf16", "uint8"]),
    "reserved_concurrent_executions": ([-1, 1, 10, 1000], [0, -2, 1.5]),
    "log_retention_days": (sorted(CLOUDWATCH_RETENTION_DAYS), [2, 13, 15, 366, 10000, -1]),
    "function_url_auth_type": (["AWS_IAM", "NONE"], ["IAM", "none", "PUBLIC", ""]),
    "cors_allow_origins": (
        [[], ["*"], ["https://app.example.com", "http://localhost:3000"]],
        [["ftp://x"], ["example.com"], ["https://ok", "bad"]],
    ),
    "environment": ([{}, {"LOG_LEVEL": "debug", "A1": "x"}], [{"1A": "x"}, {"bad-name": "x"}, {"A": "x"}]),
    "ecr_max_images": ([1, 5, 1000], [0, 1001, 2.5]),
    "api_key_source": (["none", "secretsmanager", "ssm"], ["", "SSM", "secrets_manager", "kms"]),
    "api_key_secret_arn": (
        ["", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:embedding-key-AbCdEf", "arn:aws:ssm:eu-west-1:123456789012:parameter/embedding/api-key", "arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/k"],
        ["embedding-key", "arn:aws:s3:::bucket", "arn:aws:secretsmanager:eu-west-1:123:secret:x",
         "arn:aws:ssm:eu-west-1:123456789012:document/x"],
    ),
    "api_key_value": (["", "sk-" + "a1" * 8, "A" * 64], ["short", "has a space in it!!", "tab\tinside-the-key-value"]),
    "bulk_image_tag": (["bulk", "bulk-v2", "_x"], ["", ".hidden", "-dash", "a" * 129, "with space"]),
    "bulk_image_digest": (["", "sha256:" + "0123456789abcdef" * 4], ["sha256:xyz", "sha256:" + "A" * 64]),
    "bulk_memory_size": ([128, 1769, 3538, 10240], [127, 10241, 0, 1769.5]),
    "bulk_timeout": ([1, 300, 900], [0, 901, 2.5]),
    "bulk_reserved_concurrent_executions": ([-1, 1, 100, 1000], [0, -2, 1.5]),
    "bulk_input_prefixes": (
        [[], ["bucket/prefix"], ["s3://my.bucket-1/corpus/"], ["abc"], ["s3://bucket"], ["b-1/a b/c=d/"]],
        [["Bucket/x"], ["s3://b/x"], ["bucket/*"], ["bucket/pre?fix"], ["s3:/bucket/x"], ["-bucket/x"],
         ["http://bucket/x"], ["ok-bucket/x", "BAD/x"]],
    ),
    "bulk_output_prefixes": (
        [[], ["bucket/vectors"], ["s3://bucket/vectors/"]],
        [["Bucket/x"], ["bucket/*"], ["arn:aws:s3:::bucket/x"]],
    ),
    "batch_image_tag": (["batch", "batch-v2"], ["", ".hidden", "a" * 129]),
    "batch_image_digest": (["", "sha256:" + "0123456789abcdef" * 4], ["sha256:xyz", "sha256:" + "A" * 64]),
    "batch_max_vcpus": ([1, 1000, 100000], [0, -1, 100001, 2.5]),
    "batch_vcpus": ([1, 2, 4, 8, 16], [0, 0.5, 3, 32]),
    "batch_memory": ([0, 2048, 4096, 30720, 122880], [1024, 2000, 123904, -1024]),
    "batch_timeout": ([60, 3600, 86400], [0, 59, 60.5]),
    "batch_retry_attempts": ([1, 3, 10], [0, 11, 1.5]),
    "batch_input_prefixes": ([[], ["bucket/corpus"], ["s3://bucket/corpus/"]], [["Bucket/x"], ["bucket/*"]]),
    "batch_output_prefixes": ([[], ["bucket/vectors"], ["s3://bucket"]], [["bucket/v?"], ["s3:/bucket/x"]]),
    "batch_subnet_ids": ([[], ["subnet-0123abcd"], ["subnet-0123456789abcdef0"]], [["subnet-x"], ["sg-0123abcd"]]),
    "batch_security_group_ids": ([[], ["sg-0123abcd"]], [["group"], ["subnet-0123abcd"]]),
    "batch_vpc_cidr": (["10.80.0.0/16", "172.16.0.0/18", "192.168.0.0/17"], ["10.0.0.0/8", "10.0.0.0/24", "10.0.0/16",
                                                                          "300.0.0.0/16", ""]),
    "models": (
        [["all-MiniLM-L6-v2"], ["all-MiniLM-L6-v2", "cross-encoder/ms-marco-MiniLM-L6-v2=ms-marco-MiniLM-L6-v2",
                                "splade_v3"]],
        [["a,b"], ["../x"], ["models/x"], ["/models/x"], ["=x"], ["id=a/b"], [""]],
    ),
}


# ---------------------------------------------------------------------------------------------
# Versions and provider
# ---------------------------------------------------------------------------------------------
def test_terraform_and_provider_versions_are_pinned(cfg):
    assert len(cfg["terraform"]) == 1
    settings = cfg["terraform"][0]
    required_version = unquote(settings["required_version"])
    match = re.fullmatch(r">=\s*1\.(\d+)(?:\.\d+)?", required_version)
    assert match and 5 <= int(match.group(1)) <= 11, f"Terraform {required_version!r} must admit 1.5 .. 1.11"

    aws = clean(block(settings, "required_providers"))["aws"]
    assert aws["source"] == "hashicorp/aws"
    # ~> 6.N: any 6.x from 6.N on, never 7.
    match = re.fullmatch(r"~>\s*6\.(\d+)(?:\.\d+)?", aws["version"])
    assert match, f"AWS provider must be pinned with ~> 6.x, got {aws['version']!r}"
    # aws_lambda_permission.invoked_via_function_url arrived in provider 6.28.0.
    assert int(match.group(1)) >= 28, "invoked_via_function_url needs AWS provider >= 6.28.0"


def test_provider_uses_region_and_default_tags(cfg):
    provider = cfg["provider"]["aws"]
    assert expr(provider["region"]) == "var.region"
    assert expr(block(provider, "default_tags")["tags"]) == "var.tags"


# ---------------------------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------------------------
EXPECTED_DEFAULTS = {
    "function_name": "embedding-model",
    "repository_name": "embedding_model",
    "image_tag": "latest",
    "image_digest": "",
    "memory_size": 1769,
    "timeout": 30,
    "architecture": "x86_64",
    "precision": "fp32",
    "reserved_concurrent_executions": 10,
    "log_retention_days": 14,
    "function_url_auth_type": "AWS_IAM",
    "cors_allow_origins": [],
    "environment": {},
    "ecr_max_images": 5,
    "api_key_source": "none",
    "api_key_secret_arn": "",
    "api_key_value": "",
    "bulk_function_enabled": False,
    "bulk_image_tag": "bulk",
    "bulk_image_digest": "",
    "bulk_memory_size": 1769,
    "bulk_timeout": 900,
    "bulk_reserved_concurrent_executions": -1,
    "bulk_input_prefixes": [],
    "bulk_output_prefixes": [],
    "enable_batch": False,
    "batch_image_tag": "batch",
    "batch_image_digest": "",
    "batch_max_vcpus": 256,
    "batch_vcpus": 2,
    "batch_memory": 0,
    "batch_timeout": 3600,
    "batch_retry_attempts": 3,
    "batch_input_prefixes": [],
    "batch_output_prefixes": [],
    "batch_subnet_ids": [],
    "batch_security_group_ids": [],
    "batch_vpc_cidr": "10.80.0.0/16",
    "models": [],
}


def test_every_variable_has_a_description_and_type(cfg):
    for name, body in cfg["variable"].items():
        description = unquote(body.get("description", ""))
        assert len(description.strip()) >= 10, f"variable {name} needs a real description"
        assert "type" in body, f"variable {name} needs a type"


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED_DEFAULTS.items()))
def test_variable_defaults(cfg, name, expected):
    assert name in cfg["variable"], f"variable {name} is missing"
    assert default_of(cfg, name) == expected


def test_tags_variable_feeds_default_tags(cfg):
    tags = default_of(cfg, "tags")
    assert isinstance(tags, dict) and tags, "tags should default to a non-empty map"


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_validated_variable_accepts_its_default_and_rejects_bad_values(cfg, name):
    body = cfg["variable"][name]
    validations = body.get("validation", [])
    assert validations, f"variable {name} must have a validation block"
    for validation in validations:
        assert len(unquote(validation["error_message"])) > 10
    good, bad = VALIDATION_CASES[name]
    assert evaluate_validation(cfg, name, default_of(cfg, name)), (
        f"default of {name} fails its own validation"
    )
    for value in good:
        assert evaluate_validation(cfg, name, value), f"{name} should accept {value!r}"
    for value in bad:
        assert not evaluate_validation(cfg, name, value), f"{name} should reject {value!r}"


def test_enumerations_are_exact(cfg):
    def contains_list(var_name: str) -> list[Any]:
        (validation,) = cfg["variable"][var_name]["validation"]
        match = re.fullmatch(r"contains\((\[.*\]), var\.\w+\)", expr(validation["condition"]))
        assert match, f"{var_name} should be validated with contains([...], var.{var_name})"
        return json.loads(match.group(1))

    assert set(contains_list("architecture")) == {"x86_64", "arm64"}
    assert set(contains_list("precision")) == {"fp32", "int8"}
    assert set(contains_list("function_url_auth_type")) == {"AWS_IAM", "NONE"}
    assert set(contains_list("api_key_source")) == {"none", "secretsmanager", "ssm"}
    assert set(contains_list("log_retention_days")) == CLOUDWATCH_RETENTION_DAYS


def test_tfvars_example_uses_declared_variables_with_valid_values(cfg):
    with (TF_DIR / "terraform.tfvars.example").open() as handle:
        example = clean(hcl2.load(handle))
    assert example, "terraform.tfvars.example is empty"
    for name, value in example.items():
        assert name in cfg["variable"], f"terraform.tfvars.example sets undeclared variable {name}"
        if name in VALIDATION_CASES:
            assert evaluate_validation(cfg, name, value), f"example value {name} = {value!r} is invalid"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not installed")
def test_real_terraform_enforces_the_validations(tmp_path):
    """Terraform itself evaluates the validation blocks (a copy of variables.tf needs no provider)."""
    shutil.copy(TF_DIR / "variables.tf", tmp_path / "variables.tf")

    def terraform(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["terraform", f"-chdir={tmp_path}", *args, "-input=false", "-no-color"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    init = terraform("init", "-backend=false")
    assert init.returncode == 0, init.stdout + init.stderr
    ok = terraform("plan")
    assert ok.returncode == 0, f"defaults must pass validation:\n{ok.stdout}{ok.stderr}"

    bad = {
        "region": "Mars",
        "function_name": "bad name",
        "repository_name": "Bad",
        "image_tag": ".x",
        "image_digest": "sha256:xyz",
        "memory_size": "100",
        "timeout": "901",
        "architecture": "sparc",
        "precision": "fp16",
        "reserved_concurrent_executions": "0",
        "log_retention_days": "13",
        "function_url_auth_type": "PUBLIC",
        "cors_allow_origins": '["ftp://x"]',
        "environment": '{"1A"="x"}',
        "ecr_max_images": "0",
        "api_key_source": "kms",
        "api_key_secret_arn": "not-an-arn",
        "api_key_value": "short",
        "bulk_image_tag": "-x",
        "bulk_image_digest": "sha256:0",
        "bulk_memory_size": "64",
        "bulk_timeout": "0",
        "bulk_reserved_concurrent_executions": "0",
        "bulk_input_prefixes": '["bucket/*"]',
        "bulk_output_prefixes": '["s3://Bucket/x/"]',
        "batch_image_tag": ".x",
        "batch_image_digest": "sha256:1",
        "batch_max_vcpus": "0",
        "batch_vcpus": "3",
        "batch_memory": "1000",
        "batch_timeout": "59",
        "batch_retry_attempts": "11",
        "batch_input_prefixes": '["b/*"]',
        "batch_output_prefixes": '["B/x"]',
        "batch_subnet_ids": '["subnet-x"]',
        "batch_security_group_ids": '["group"]',
        "batch_vpc_cidr": "10.0.0.0/8",
        "models": '["a,b"]',
    }
    assert set(bad) == set(VALIDATION_CASES)
    args = [arg for name, value in bad.items() for arg in ("-var", f"{name}={value}")]
    failed = terraform("plan", *args)
    assert failed.returncode != 0
    output = " ".join((failed.stdout + failed.stderr).split())
    assert output.count("Invalid value for variable") == len(bad), output
    for name in bad:
        first_words = " ".join(unquote(cfg_error_message(name)).split()[:3])
        assert first_words in output, f"no validation error for {name}: {output}"


def cfg_error_message(name: str) -> str:
    (validation,) = load_config()["variable"][name]["validation"]
    return validation["error_message"]


# ---------------------------------------------------------------------------------------------
# ECR
# ---------------------------------------------------------------------------------------------
def test_ecr_repository(cfg):
    repo = only(cfg, "aws_ecr_repository")
    assert expr(repo["name"]) == "var.repository_name"
    assert block(repo, "image_scanning_configuration")["scan_on_push"] is True
    assert repo["force_delete"] is True, "destroy must be able to delete a repository holding images"
    assert unquote(repo["image_tag_mutability"]) == "MUTABLE"
    assert unquote(block(repo, "encryption_configuration")["encryption_type"]) in {"AES256", "KMS"}
    # deploy.sh's first stage targets this exact address.
    assert ("aws_ecr_repository", "this") in cfg["resource"]


def test_ecr_lifecycle_policy_keeps_the_last_n_images(cfg):
    policy = only(cfg, "aws_ecr_lifecycle_policy")
    assert expr(policy["repository"]) == "aws_ecr_repository.this.name"
    text = expr(policy["policy"])
    assert text.startswith("jsonencode(")
    for needle in ('"imageCountMoreThan"', "var.ecr_max_images", '"expire"', '"any"'):
        assert needle in text, f"lifecycle policy should contain {needle}"


# ---------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------
def test_role_has_basic_execution_and_at_most_the_api_key_read(cfg):
    role = named(cfg, "aws_iam_role", "lambda")
    assert "inline_policy" not in role and "managed_policy_arns" not in role
    for forbidden in ("aws_iam_policy", "aws_iam_role_policies_exclusive"):
        assert not resources(cfg, forbidden), f"the execution role must not get {forbidden}"
    # The one inline policy: read the API key, only when there is one, only that ARN.
    policy = named(cfg, "aws_iam_role_policy", "read_api_key")
    assert expr(policy["count"]) == 'var.api_key_source == "none" ? 0 : 1'
    assert expr(policy["role"]) == "aws_iam_role.lambda.id"
    document = cfg["data"][("aws_iam_policy_document", "read_api_key")]
    (statement,) = document["statement"]
    assert unquote(statement["effect"]) == "Allow"
    assert [expr(r) for r in statement["resources"]] == ["local.api_key_arn"]
    assert expr(statement["actions"]) == (
        'var.api_key_source == "secretsmanager" ? ["secretsmanager:GetSecretValue"] : ["ssm:GetParameter"]'
    )

    attachment = named(cfg, "aws_iam_role_policy_attachment", "basic_execution")
    assert expr(attachment["role"]) == "aws_iam_role.lambda.name"
    arn = unquote(attachment["policy_arn"])
    assert (
        arn
        == "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    )
    assert ("aws_partition", "current") in cfg["data"]


def test_role_trusts_only_lambda(cfg):
    role = named(cfg, "aws_iam_role", "lambda")
    assert expr(role["assume_role_policy"]) == "data.aws_iam_policy_document.lambda_assume_role.json"
    document = clean(cfg["data"][("aws_iam_policy_document", "lambda_assume_role")])
    (statement,) = document["statement"]
    assert statement["effect"] == "Allow"
    assert statement["actions"] == ["sts:AssumeRole"]
    (principals,) = statement["principals"]
    assert principals == {"type": "Service", "identifiers": ["lambda.amazonaws.com"]}


# ---------------------------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------------------------
def test_log_group(cfg):
    group = named(cfg, "aws_cloudwatch_log_group", "lambda")
    assert unquote(group["name"]) == "/aws/lambda/${var.function_name}"
    assert expr(group["retention_in_days"]) == "var.log_retention_days"


def test_function_is_an_image_built_from_the_variables(cfg):
    function = named(cfg, "aws_lambda_function", "this")
    assert expr(function["function_name"]) == "var.function_name"
    assert unquote(function["package_type"]) == "Image"
    assert [expr(a) for a in function["architectures"]] == ["var.architecture"]
    assert expr(function["memory_size"]) == "var.memory_size"
    assert expr(function["timeout"]) == "var.timeout"
    assert expr(function["reserved_concurrent_executions"]) == "var.reserved_concurrent_executions"
    assert expr(function["role"]) == "aws_iam_role.lambda.arn"
    for absent in ("handler", "runtime", "filename", "s3_bucket", "vpc_config"):
        assert absent not in function, f"an image function must not set {absent}"


def test_image_uri_pins_the_digest_when_given(cfg):
    function = named(cfg, "aws_lambda_function", "this")
    assert expr(function["image_uri"]) == "local.image_uri"
    image_uri = expr(cfg["locals"]["image_uri"])
    assert 'var.image_digest != ""' in image_uri
    assert "${aws_ecr_repository.this.repository_url}@${var.image_digest}" in image_uri
    assert "${aws_ecr_repository.this.repository_url}:${var.image_tag}" in image_uri
    # The digest branch must be the one taken when image_digest is set.
    assert image_uri.index("@${var.image_digest}") < image_uri.index(":${var.image_tag}")


def test_function_environment(cfg):
    function = named(cfg, "aws_lambda_function", "this")
    variables = expr(block(function, "environment")["variables"])
    assert variables == (
        "merge(local.default_environment, local.models_environment, local.api_key_environment, var.environment)"
    ), "var.environment must be merged last"
    defaults = clean(cfg["locals"]["default_environment"])
    assert defaults["EMBEDDING_BACKEND"] == "onnx"
    assert defaults["HF_HUB_OFFLINE"] == "1"
    # The precision reaches the service under the name settings.py reads; the image must carry its file.
    assert expr(defaults["EMBEDDING_PRECISION"]) == "var.precision"
    assert '"EMBEDDING_PRECISION"' in (ROOT / "package" / "src" / "embedding_service" / "settings.py").read_text()
    dockerfile = (ROOT / "Dockerfile.lambda").read_text()
    assert "ARG PRECISION=fp32" in dockerfile and "EMBEDDING_PRECISION=${PRECISION}" in dockerfile


def test_several_models_share_one_function_through_models_and_an_image_that_bakes_them(cfg):
    """var.models -> MODELS (each folder under /models, an id= kept) and MODEL_DIR cleared, which the
    service needs (it refuses both); Dockerfile.lambda's MODELS build arg bakes exactly those folders."""
    models = expr(cfg["locals"]["models_environment"])
    assert models.startswith("length(var.models) == 0 ? {} :")
    assert '"/models/${model}"' in models and '"${split("=", model)[0]}=/models/${split("=", model)[1]}"' in models
    assert 'MODEL_DIR = ""' in models.replace('"MODEL_DIR"', "MODEL_DIR")
    settings = (ROOT / "package" / "src" / "embedding_service" / "settings.py").read_text()
    assert '"MODELS"' in settings and '"MODEL_DIR"' in settings
    dockerfile = (ROOT / "Dockerfile.lambda").read_text()
    assert "ARG MODELS=all-MiniLM-L6-v2" in dockerfile and "for name in $MODELS; do" in dockerfile
    assert 'mv "$src" "/models/$name"' in dockerfile and "ENV MODEL_DIR=/models/all-MiniLM-L6-v2" in dockerfile


def test_function_logging_and_dependencies(cfg):
    function = named(cfg, "aws_lambda_function", "this")
    logging_config = block(function, "logging_config")
    assert unquote(logging_config["log_format"]) == "JSON"
    assert expr(logging_config["log_group"]) == "aws_cloudwatch_log_group.lambda.name"
    depends_on = [expr(d) for d in function["depends_on"]]
    assert "aws_cloudwatch_log_group.lambda" in depends_on
    assert "aws_iam_role_policy_attachment.basic_execution" in depends_on


def test_function_url(cfg):
    url = only(cfg, "aws_lambda_function_url")
    assert expr(url["function_name"]) == "aws_lambda_function.this.function_name"
    assert expr(url["authorization_type"]) == "var.function_url_auth_type"
    assert "cors" not in url, "CORS must only be configured when origins are given (dynamic block)"
    (dynamic,) = url["dynamic"]
    cors = dynamic['"cors"']
    assert "var.cors_allow_origins" in expr(cors["for_each"])
    assert "length(var.cors_allow_origins) > 0" in expr(cors["for_each"])
    content = block(cors, "content")
    assert expr(content["allow_origins"]) == "cors.value"
    assert "POST" in clean(content["allow_methods"])


def test_public_access_permissions_exist_only_for_auth_none(cfg):
    permissions = resources(cfg, "aws_lambda_permission")
    assert len(permissions) == 2, f"expected the two Function URL permissions, got {sorted(permissions)}"
    by_action = {unquote(p["action"]): p for p in permissions.values()}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}

    for permission in permissions.values():
        assert expr(permission["count"]) == 'var.function_url_auth_type == "NONE" ? 1 : 0'
        assert unquote(permission["principal"]) == "*"
        assert expr(permission["function_name"]) == "aws_lambda_function.this.function_name"
        assert unquote(permission["statement_id"]) not in PROVIDER_STATEMENT_IDS

    url_permission = by_action["lambda:InvokeFunctionUrl"]
    assert unquote(url_permission["function_url_auth_type"]) == "NONE"
    assert "invoked_via_function_url" not in url_permission  # only valid with InvokeFunction

    invoke_permission = by_action["lambda:InvokeFunction"]
    assert invoke_permission["invoked_via_function_url"] is True
    assert "function_url_auth_type" not in invoke_permission  # only valid with InvokeFunctionUrl

    ids = {unquote(p["statement_id"]) for p in permissions.values()}
    assert len(ids) == 2


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
def test_outputs(cfg):
    expected = {
        "function_url": "aws_lambda_function_url.this.function_url",
        "repository_url": "aws_ecr_repository.this.repository_url",
        "function_name": "aws_lambda_function.this.function_name",
        "function_arn": "aws_lambda_function.this.arn",
        "image_uri": "aws_lambda_function.this.image_uri",
    }
    for name, value in expected.items():
        assert name in cfg["output"], f"output {name} is missing"
        assert expr(cfg["output"][name]["value"]) == value
    assert expr(cfg["output"]["bulk_function_name"]["value"]) == (
        'var.bulk_function_enabled ? aws_lambda_function.bulk[0].function_name : ""'
    )
    for name, body in cfg["output"].items():
        assert len(unquote(body.get("description", ""))) > 10, f"output {name} needs a description"


def test_curl_example_matches_the_auth_type(cfg):
    value = expr(cfg["output"]["curl_example"]["value"])
    assert value.startswith('(var.function_url_auth_type == "NONE"')
    public, signed = value.split(" : ", 1)
    url = "${aws_lambda_function_url.this.function_url}"
    body = '-d \'{\\"input\\": \\"hello, world!\\"}\''
    assert "curl ${local.curl_api_key_header}-H 'Content-Type: application/json' " + body + " " + url in public
    header = expr(cfg["locals"]["curl_api_key_header"])
    assert header == 'var.api_key_source == "none" ? "" : "-H \\"Authorization: Bearer $API_KEY\\" "', header
    assert "--aws-sigv4" not in public
    assert '--aws-sigv4 \\"aws:amz:${var.region}:lambda\\"' in signed
    assert '--user \\"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\\"' in signed
    assert '-H \\"x-amz-security-token: $AWS_SESSION_TOKEN\\"' in signed
    assert body in signed and signed.rstrip('")').endswith(url)


# ---------------------------------------------------------------------------------------------
# The bulk function (bulk.tf): embed-corpus's shard jobs, S3 in and S3 out
# ---------------------------------------------------------------------------------------------
BULK_RESOURCES = {
    ("aws_cloudwatch_log_group", "bulk"): "local.bulk_count",
    ("aws_iam_role", "bulk"): "local.bulk_count",
    ("aws_iam_role_policy_attachment", "bulk_basic_execution"): "local.bulk_count",
    ("aws_iam_role_policy", "bulk_s3"): "local.bulk_s3_policy_count",
    ("aws_lambda_function", "bulk"): "local.bulk_count",
}


def test_bulk_resources_exist_only_when_enabled(cfg):
    assert expr(cfg["locals"]["bulk_count"]) == "var.bulk_function_enabled ? 1 : 0"
    # The S3 grants: only with the function, and only when some prefix is given.
    assert expr(cfg["locals"]["bulk_s3_policy_count"]) == (
        "var.bulk_function_enabled && "
        "length(local.bulk_input_arns) + length(local.bulk_output_arns) > 0 ? 1 : 0"
    )
    in_file = {
        (unquote(rtype), unquote(name))
        for block_ in cfg["raw"]["bulk.tf"]["resource"]
        for rtype, named_ in block_.items()
        for name in named_
    }
    assert in_file == set(BULK_RESOURCES)
    for key, count in BULK_RESOURCES.items():
        assert expr(cfg["resource"][key]["count"]) == count, key
    assert expr(cfg["data"][("aws_iam_policy_document", "bulk_s3")]["count"]) == "local.bulk_s3_policy_count"
    # No Function URL and no resource-policy statement for it: embed-corpus invokes it directly.
    for rtype in ("aws_lambda_function_url", "aws_lambda_permission"):
        for body in resources(cfg, rtype).values():
            assert expr(body["function_name"]) == "aws_lambda_function.this.function_name"


def test_bulk_function(cfg):
    function = named(cfg, "aws_lambda_function", "bulk")
    assert unquote(function["function_name"]) == "${var.function_name}-bulk"
    assert unquote(function["package_type"]) == "Image"
    assert expr(function["image_uri"]) == "local.bulk_image_uri"
    assert [expr(a) for a in function["architectures"]] == ["var.architecture"]
    assert expr(function["memory_size"]) == "var.bulk_memory_size"
    assert expr(function["timeout"]) == "var.bulk_timeout"
    assert expr(function["reserved_concurrent_executions"]) == "var.bulk_reserved_concurrent_executions"
    assert expr(function["role"]) == "aws_iam_role.bulk[0].arn"
    for absent in ("handler", "runtime", "filename", "s3_bucket", "vpc_config"):
        assert absent not in function, f"an image function must not set {absent}"
    # The query function's settings, never the API key's location (this role can't read it).
    environment = expr(block(function, "environment")["variables"])
    assert environment == "merge(local.default_environment, var.environment)"
    logging_config = block(function, "logging_config")
    assert unquote(logging_config["log_format"]) == "JSON"
    assert expr(logging_config["log_group"]) == "aws_cloudwatch_log_group.bulk[0].name"
    depends_on = {expr(d) for d in function["depends_on"]}
    assert depends_on == {
        "aws_cloudwatch_log_group.bulk",
        "aws_iam_role_policy_attachment.bulk_basic_execution",
        "aws_iam_role_policy.bulk_s3",
    }
    # <function_name>-bulk must still be a valid function name (64 characters at most).
    (precondition,) = block(function, "lifecycle")["precondition"]
    assert expr(precondition["condition"]) == "length(var.function_name) <= 59"

    group = named(cfg, "aws_cloudwatch_log_group", "bulk")
    assert unquote(group["name"]) == "/aws/lambda/${var.function_name}-bulk"
    assert expr(group["retention_in_days"]) == "var.log_retention_days"

    # The same repository, the bulk image's digest when given, else its tag.
    image_uri = expr(cfg["locals"]["bulk_image_uri"])
    assert 'var.bulk_image_digest != ""' in image_uri
    digest = "${aws_ecr_repository.this.repository_url}@${var.bulk_image_digest}"
    tag = "${aws_ecr_repository.this.repository_url}:${var.bulk_image_tag}"
    assert image_uri.index(digest) < image_uri.index(tag)


def test_bulk_role_may_only_get_input_objects_and_put_output_objects(cfg):
    role = named(cfg, "aws_iam_role", "bulk")
    assert expr(role["assume_role_policy"]) == "data.aws_iam_policy_document.lambda_assume_role.json"
    assert unquote(role["name"]) == "${substr(var.function_name, 0, 52)}-bulk-lambda"
    assert 52 + len("-bulk-lambda") == 64, "IAM role names are limited to 64 characters"
    assert "inline_policy" not in role and "managed_policy_arns" not in role

    attachment = named(cfg, "aws_iam_role_policy_attachment", "bulk_basic_execution")
    assert expr(attachment["role"]) == "aws_iam_role.bulk[0].name"
    assert unquote(attachment["policy_arn"]) == unquote(
        named(cfg, "aws_iam_role_policy_attachment", "basic_execution")["policy_arn"]
    )

    policy = named(cfg, "aws_iam_role_policy", "bulk_s3")
    assert expr(policy["role"]) == "aws_iam_role.bulk[0].id"
    assert expr(policy["policy"]) == "data.aws_iam_policy_document.bulk_s3[0].json"
    document = cfg["data"][("aws_iam_policy_document", "bulk_s3")]
    assert "statement" not in document, "the statements exist only for the prefixes given (dynamic blocks)"
    statements = {}
    for dynamic in document["dynamic"]:
        body = dynamic['"statement"']
        (content,) = body["content"]
        statements[tuple(clean(content["actions"]))] = (expr(body["for_each"]), clean(content))
    assert set(statements) == {("s3:GetObject",), ("s3:PutObject",)}
    grants = ((("s3:GetObject",), "local.bulk_input_arns"), (("s3:PutObject",), "local.bulk_output_arns"))
    for action, arns in grants:
        for_each, content = statements[action]
        assert for_each == f"length({arns}) > 0 ? [{arns}] : []"
        assert content["effect"] == "Allow" and expr(content["resources"]) == "statement.value"
        assert "condition" not in content and "not_actions" not in content
    # Each prefix becomes the objects below that folder, in the deployment's partition.
    arn = (
        '"arn:${data.aws_partition.current.partition}:s3:::'
        '${trimsuffix(trimprefix(prefix, \"s3://\"), \"/\")}/*"'
    )
    pairs = (("bulk_input_arns", "bulk_input_prefixes"), ("bulk_output_arns", "bulk_output_prefixes"))
    for name, variable in pairs:
        assert expr(cfg["locals"][name]) == f"[for prefix in var.{variable} : {arn}]"
    # Nothing else anywhere grants S3; the Batch job role (batch.tf) also lists its output folder.
    for path in TF_DIR.glob("*.tf"):
        actions = set(re.findall(r'"(s3:[A-Za-z*]+)"', path.read_text()))
        allowed = {"s3:GetObject", "s3:PutObject"} | ({"s3:ListBucket", "s3:prefix"} if path.name == "batch.tf" else set())
        assert actions <= allowed, (path.name, actions)


def test_bulk_jobs_leave_live_queries_capacity(cfg):
    """A check block (a warning, not an error) when both functions draw from the unreserved pool."""
    (check,) = cfg["raw"]["bulk.tf"]["check"]
    (body,) = check.values()
    (assertion,) = body["assert"]
    assert expr(assertion["condition"]) == (
        "!var.bulk_function_enabled || var.reserved_concurrent_executions != -1 "
        "|| var.bulk_reserved_concurrent_executions != -1"
    )
    assert default_of(cfg, "reserved_concurrent_executions") != -1, "live queries must be reserved by default"


# ---------------------------------------------------------------------------------------------
# AWS Batch (batch.tf): embed-corpus --target batch://QUEUE
# ---------------------------------------------------------------------------------------------
def test_batch_resources_exist_only_when_enabled(cfg):
    assert expr(cfg["locals"]["batch_count"]) == "var.enable_batch ? 1 : 0"
    assert expr(cfg["locals"]["batch_network_count"]) == "var.enable_batch && length(var.batch_subnet_ids) == 0 ? 1 : 0"
    counts = {"local.batch_count", "local.batch_network_count", "local.batch_s3_policy_count", "length(local.batch_azs)"}
    for block_ in cfg["raw"]["batch.tf"]["resource"] + cfg["raw"]["batch.tf"]["data"]:
        for rtype, named_ in block_.items():
            for name, body in named_.items():
                if "for_each" in body:  # the compute environments: one per type, none when disabled
                    assert expr(body["for_each"]) == "toset(local.batch_compute_types)", (rtype, name)
                    continue
                assert expr(body["count"]) in counts, (rtype, name)
    assert expr(cfg["output"]["batch_job_queue_name"]["value"]) == (
        'var.enable_batch ? aws_batch_job_queue.this[0].name : ""')
    assert expr(cfg["output"]["batch_job_definition_name"]["value"]) == (
        'var.enable_batch ? aws_batch_job_definition.worker[0].name : ""')


def test_batch_names_are_the_clients_defaults(cfg):
    """embed-corpus's --batch-job-definition defaults to <function_name>-batch-worker, like <name>-bulk."""
    from embedding_client.workers.batch_interface import DEFAULT_JOB_DEFINITION

    assert unquote(cfg["locals"]["batch_job_definition_name"]) == "${var.function_name}-batch-worker"
    assert DEFAULT_JOB_DEFINITION == f"{default_of(cfg, 'function_name')}-batch-worker"
    assert unquote(cfg["locals"]["batch_queue_name"]) == "${var.function_name}-batch"
    definition = named(cfg, "aws_batch_job_definition", "worker")
    assert expr(definition["name"]) == "local.batch_job_definition_name"
    assert expr(named(cfg, "aws_batch_job_queue", "this")["name"]) == "local.batch_queue_name"


def test_batch_queue_puts_fargate_spot_before_on_demand(cfg):
    assert expr(cfg["locals"]["batch_compute_types"]) == 'var.enable_batch ? ["FARGATE_SPOT", "FARGATE"] : []'
    queue = named(cfg, "aws_batch_job_queue", "this")
    (dynamic,) = [clean(d) for d in queue["dynamic"]]
    order = dynamic["compute_environment_order"]
    assert expr(order["for_each"]) == "local.batch_compute_types"
    (content,) = order["content"]
    assert expr(content["order"]) == "compute_environment_order.key + 1"  # the list's order: Spot first
    assert expr(content["compute_environment"]) == (
        "aws_batch_compute_environment.this[compute_environment_order.value].arn")
    environment = named(cfg, "aws_batch_compute_environment", "this")
    assert expr(environment["for_each"]) == "toset(local.batch_compute_types)"
    resources_ = block(environment, "compute_resources")
    assert expr(resources_["type"]) == "each.key"
    assert expr(resources_["max_vcpus"]) == "var.batch_max_vcpus"


def test_batch_retries_spot_reclaims_and_never_bad_input(cfg):
    definition = named(cfg, "aws_batch_job_definition", "worker")
    retry = block(definition, "retry_strategy")
    assert expr(retry["attempts"]) == "var.batch_retry_attempts"
    rules = [clean(r) for r in retry["evaluate_on_exit"]]
    assert [r["action"] for r in rules] == ["RETRY", "RETRY", "EXIT"]
    assert [r.get("on_status_reason") for r in rules[:2]] == ["Host EC2*", "Your Spot Task was interrupted*"]
    assert expr(rules[2]["on_exit_code"]) == "local.batch_bad_input_exit_code"
    # The worker's own constant (the client and the retry strategy must never disagree).
    from embedding_client.workers.batch_interface import EXIT_BAD_INPUT, RUN_COMMAND

    assert unquote(cfg["locals"]["batch_bad_input_exit_code"]) == str(EXIT_BAD_INPUT)
    # No NAT gateway anywhere: the tasks get a public IP and S3 a gateway endpoint.
    assert not resources(cfg, "aws_nat_gateway")
    endpoint = named(cfg, "aws_vpc_endpoint", "batch_s3")
    assert unquote(endpoint["vpc_endpoint_type"]) == "Gateway"
    properties = expr(definition["container_properties"])
    assert "networkConfiguration = {assignPublicIp = \"ENABLED\"}" in properties
    assert f"command = {json.dumps(RUN_COMMAND)}" in properties


# ---------------------------------------------------------------------------------------------
# Lint: checkov skips, terraform fmt, checkov
# ---------------------------------------------------------------------------------------------
SKIP = re.compile(r"#\s*checkov:skip=(CKV2?_AWS_\d+)(?::(.*))?$")


def test_every_checkov_skip_is_inline_and_explained():
    skips = []
    for path in sorted(TF_DIR.glob("*.tf")):
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" in line:
                match = SKIP.search(line.strip())
                assert match, f"{path.name}:{line_no}: malformed checkov skip: {line.strip()}"
                reason = (match.group(2) or "").strip()
                assert len(reason) >= 30, f"{path.name}:{line_no}: {match.group(1)} needs a real reason"
                skips.append(match.group(1))
    assert skips, "expected the documented checkov skips"
    # A skip belongs in the resource it excuses, not in a global config file.
    config = TF_DIR / ".checkov.yaml"
    if config.exists():
        assert "skip-check" not in config.read_text()


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not installed")
def test_terraform_fmt():
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"run `terraform fmt -recursive terraform`:\n{result.stdout}{result.stderr}"
    )


def run_checkov(*extra: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(CHECKOV), "-d", str(TF_DIR), "--quiet", "--compact", "--skip-download", "-o", "json", *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    report = json.loads(result.stdout)
    if isinstance(report, list):
        (report,) = [r for r in report if r.get("check_type") == "terraform"]
    return report


def failed_checks(report: dict[str, Any]) -> set[tuple[str, str]]:
    if "results" not in report:  # checkov's output when nothing failed and nothing was found
        return set()
    return {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}


@pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov not installed in .tools/checkov-venv (see terraform/README.md)"
)
def test_checkov_passes():
    report = run_checkov()
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["failed"] == 0, failed_checks(report)
    assert report["summary"]["passed"] > 0


@pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov not installed in .tools/checkov-venv (see terraform/README.md)"
)
def test_checkov_passes_with_the_bulk_function(tmp_path):
    var_file = tmp_path / "bulk.tfvars"
    var_file.write_text(
        'bulk_function_enabled = true\nbulk_reserved_concurrent_executions = 100\n'
        'bulk_input_prefixes = ["s3://corpus-bucket/corpus/"]\n'
        'bulk_output_prefixes = ["vectors-bucket/vectors"]\n'
    )
    report = run_checkov("--var-file", str(var_file))
    assert report["summary"]["parsing_errors"] == 0
    assert failed_checks(report) == set()


@pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov not installed in .tools/checkov-venv (see terraform/README.md)"
)
def test_checkov_passes_with_batch(tmp_path):
    var_file = tmp_path / "batch.tfvars"
    var_file.write_text(
        'enable_batch = true\nbatch_input_prefixes = ["s3://corpus-bucket/corpus/"]\n'
        'batch_output_prefixes = ["vectors-bucket/vectors"]\n'
    )
    report = run_checkov("--var-file", str(var_file))
    assert report["summary"]["parsing_errors"] == 0
    assert failed_checks(report) == set()
    assert report["summary"]["passed"] > run_checkov()["summary"]["passed"], "the Batch resources were checked"


@pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov not installed in .tools/checkov-venv (see terraform/README.md)"
)
def test_checkov_with_a_public_url_flags_only_the_auth_type(tmp_path):
    """With auth NONE the permissions' skips hold; only the deliberate CKV_AWS_258 remains."""
    var_file = tmp_path / "public.tfvars"
    var_file.write_text('function_url_auth_type = "NONE"\n')
    report = run_checkov("--var-file", str(var_file))
    assert failed_checks(report) == {("CKV_AWS_258", "aws_lambda_function_url.this")}


# ---------------------------------------------------------------------------------------------
# The API key (api_key.tf)
# ---------------------------------------------------------------------------------------------
def test_api_key_secrets_are_created_only_when_asked_and_deleted_on_destroy(cfg):
    secret = only(cfg, "aws_secretsmanager_secret")
    assert expr(secret["count"]) == 'local.create_api_key && var.api_key_source == "secretsmanager" ? 1 : 0'
    assert unquote(secret["name"]) == "${var.function_name}-api-key"
    assert secret["recovery_window_in_days"] == 0, "destroy must free the name for the next apply"
    version = only(cfg, "aws_secretsmanager_secret_version")
    assert expr(version["secret_string"]) == "local.initial_api_key"
    assert [expr(i) for i in block(version, "lifecycle")["ignore_changes"]] == ["secret_string"]

    parameter = only(cfg, "aws_ssm_parameter")
    assert expr(parameter["count"]) == 'local.create_api_key && var.api_key_source == "ssm" ? 1 : 0'
    assert unquote(parameter["type"]) == "SecureString"
    assert [expr(i) for i in block(parameter, "lifecycle")["ignore_changes"]] == ["value"]

    assert expr(cfg["locals"]["create_api_key"]) == 'var.api_key_source != "none" && var.api_key_secret_arn == ""'
    assert cfg["variable"]["api_key_value"]["sensitive"] is True
    generated = cfg["data"][("aws_secretsmanager_random_password", "api_key")]
    assert generated["exclude_punctuation"] is True and generated["password_length"] >= 32


def test_the_function_gets_the_key_location_under_the_names_the_service_reads(cfg):
    environment = clean(cfg["locals"]["api_key_environment"])
    text = json.dumps(environment)
    settings = (ROOT / "package" / "src" / "embedding_service" / "settings.py").read_text()
    for name in ("API_KEY_SECRET_ARN", "API_KEY_SSM_PARAMETER"):
        assert name in text and f'"{name}"' in settings
    assert "API_KEY\"" not in text.replace("API_KEY_", ""), "the key itself never goes into the environment"


def test_an_api_key_behind_aws_iam_is_refused(cfg):
    function = named(cfg, "aws_lambda_function", "this")
    (precondition,) = block(function, "lifecycle")["precondition"]
    assert expr(precondition["condition"]) == 'var.api_key_source == "none" || var.function_url_auth_type == "NONE"'
    depends_on = [expr(d) for d in function["depends_on"]]
    assert "aws_iam_role_policy.read_api_key" in depends_on  # readable before the first cold start


@pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov not installed in .tools/checkov-venv (see terraform/README.md)"
)
@pytest.mark.parametrize("source", ["secretsmanager", "ssm"])
def test_checkov_with_an_api_key_flags_only_the_auth_type(tmp_path, source):
    """The NONE + API key mode: the URL itself is open (the key is checked in the function)."""
    var_file = tmp_path / "api-key.tfvars"
    var_file.write_text(f'function_url_auth_type = "NONE"\napi_key_source = "{source}"\n')
    report = run_checkov("--var-file", str(var_file))
    assert failed_checks(report) == {("CKV_AWS_258", "aws_lambda_function_url.this")}
