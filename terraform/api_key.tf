# The optional API key (var.api_key_source): a secret the function reads once per cold start
# (package/src/auth.py) and the execution role's permission to read exactly that secret.
# Nothing here exists with the default api_key_source = "none".
locals {
  create_api_key = var.api_key_source != "none" && var.api_key_secret_arn == ""
  api_key_arn = (
    var.api_key_source == "none" ? "" :
    var.api_key_secret_arn != "" ? var.api_key_secret_arn :
    var.api_key_source == "secretsmanager" ? aws_secretsmanager_secret.api_key[0].arn : aws_ssm_parameter.api_key[0].arn
  )
  # The service's settings (docs/reference/settings.md): which variable names the key's location.
  api_key_environment = {
    none           = {}
    secretsmanager = { API_KEY_SECRET_ARN = local.api_key_arn }
    ssm            = { API_KEY_SSM_PARAMETER = local.api_key_arn }
  }[var.api_key_source]
  # For outputs.tf's curl_example: the key is read from $API_KEY (see the api_key_command output).
  curl_api_key_header = var.api_key_source == "none" ? "" : "-H \"Authorization: Bearer $API_KEY\" "
}

# A generated key when none is given: letters and digits only, so it is safe in a header.
data "aws_secretsmanager_random_password" "api_key" {
  count               = local.create_api_key && var.api_key_value == "" ? 1 : 0
  password_length     = 48
  exclude_punctuation = true
}

locals {
  initial_api_key = var.api_key_value != "" ? var.api_key_value : one(data.aws_secretsmanager_random_password.api_key[*].random_password)
}

resource "aws_secretsmanager_secret" "api_key" {
  #checkov:skip=CKV_AWS_149:Encrypted with the AWS-managed aws/secretsmanager key; the execution role reads it without extra KMS grants, and a customer-managed key would add cost for a key that is cheap to replace.
  #checkov:skip=CKV2_AWS_57:No automatic rotation: the function reads the key once per cold start and clients hold a copy, so a rotation needs coordinated client updates; rotate by putting a new value and redeploying.
  count       = local.create_api_key && var.api_key_source == "secretsmanager" ? 1 : 0
  name        = "${var.function_name}-api-key"
  description = "API key (Authorization: Bearer) of the ${var.function_name} embedding function"
  # Deleted at once on destroy, so a later apply can create the same name again.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "api_key" {
  count         = length(aws_secretsmanager_secret.api_key)
  secret_id     = aws_secretsmanager_secret.api_key[0].id
  secret_string = local.initial_api_key

  lifecycle {
    # A generated key is generated once; a key changed outside Terraform stays as it is.
    ignore_changes = [secret_string]
  }
}

resource "aws_ssm_parameter" "api_key" {
  #checkov:skip=CKV_AWS_337:A SecureString encrypted with the AWS-managed aws/ssm key; the execution role decrypts it without extra KMS grants, and a customer-managed key would add cost for a key that is cheap to replace.
  count       = local.create_api_key && var.api_key_source == "ssm" ? 1 : 0
  name        = "/${var.function_name}/api-key"
  description = "API key (Authorization: Bearer) of the ${var.function_name} embedding function"
  type        = "SecureString"
  value       = local.initial_api_key

  lifecycle {
    ignore_changes = [value]
  }
}

# The execution role may read this one secret and nothing else.
data "aws_iam_policy_document" "read_api_key" {
  count = var.api_key_source == "none" ? 0 : 1

  statement {
    effect    = "Allow"
    actions   = var.api_key_source == "secretsmanager" ? ["secretsmanager:GetSecretValue"] : ["ssm:GetParameter"]
    resources = [local.api_key_arn]
  }
}

resource "aws_iam_role_policy" "read_api_key" {
  count  = var.api_key_source == "none" ? 0 : 1
  name   = "read-api-key"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.read_api_key[0].json
}
