"""Does an IAM role allow an S3 action on an object? Asked before a Batch run submits anything.

A Lambda worker proves its grants by writing a probe object; a Batch job role can't be tried
without starting a container (minutes), so its policies are evaluated instead. AWS's policy
simulator answers first (it knows every policy type); where it is unavailable (an emulator, or
no iam:SimulatePrincipalPolicy) the role's inline and attached policies are read and evaluated
here: an explicit Deny wins, otherwise an Allow whose Action and Resource patterns match (a
statement with a Condition counts as allowing, since its context is unknown until run time).
"""

from __future__ import annotations

import fnmatch
import json
from urllib.parse import unquote


def role_name(role_arn: str) -> str:
    return role_arn.rsplit("/", 1)[-1]


def allowed(iam, role_arn: str, action: str, resource: str) -> bool:
    """True when the role may do `action` on `resource` (an arn:aws:s3:::bucket/key)."""
    try:
        result = iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=[action], ResourceArns=[resource])
        return all(item["EvalDecision"] == "allowed" for item in result["EvaluationResults"])
    except Exception as error:  # not implemented here, or not granted to us: read the policies
        if _is_access_denied(error) and not _can_read_role(iam, role_arn):
            raise
    return evaluate(role_policies(iam, role_arn), action, resource)


def _is_access_denied(error: Exception) -> bool:
    code = str(((getattr(error, "response", None) or {}).get("Error") or {}).get("Code", ""))
    return code in ("AccessDenied", "AccessDeniedException")


def _can_read_role(iam, role_arn: str) -> bool:
    try:
        iam.get_role(RoleName=role_name(role_arn))
        return True
    except Exception:
        return False


def role_policies(iam, role_arn: str) -> list[dict]:
    """Every policy document of the role: inline ones and the default versions of attached ones."""
    name = role_name(role_arn)
    documents = []
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        documents.append(_document(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]))
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        arn = attached["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        documents.append(_document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]))
    return documents


def _document(value) -> dict:
    if isinstance(value, str):
        return json.loads(unquote(value))
    return value


def evaluate(documents: list[dict], action: str, resource: str) -> bool:
    allow = False
    for document in documents:
        statements = document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            if not (_matches(statement, "Action", "NotAction", action, True) and _matches(statement, "Resource", "NotResource", resource, False)):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allow = allow or statement.get("Effect") == "Allow"
    return allow


def _matches(statement: dict, key: str, not_key: str, value: str, fold: bool) -> bool:
    def any_match(patterns) -> bool:
        patterns = patterns if isinstance(patterns, list) else [patterns]
        return any(fnmatch.fnmatchcase(value.lower() if fold else value, p.lower() if fold else p) for p in patterns)

    if key in statement:
        return any_match(statement[key])
    if not_key in statement:
        return not any_match(statement[not_key])
    return False


def s3_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"
