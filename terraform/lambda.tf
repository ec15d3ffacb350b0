locals {
  # A digest pins exactly the pushed image; a tag is resolved once, when the function is
  # created or its image_uri changes, so re-pushing a tag alone would not update the function.
  image_uri = (
    var.image_digest != ""
    ? "${aws_ecr_repository.this.repository_url}@${var.image_digest}"
    : "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
  )

  # The function must use the ONNX backend and never reach for the Hugging Face Hub (the
  # model is baked into the image), at the precision whose ONNX file the image carries.
  # var.environment may add to or override these.
  default_environment = {
    EMBEDDING_BACKEND   = "onnx"
    EMBEDDING_PRECISION = var.precision
    HF_HUB_OFFLINE      = "1"
  }

  # Several models in one function (var.models): MODELS lists their folders in the image, and
  # MODEL_DIR, which the image sets for its one default model, is cleared (the service refuses both).
  models_environment = length(var.models) == 0 ? {} : {
    MODELS = join(",", [
      for model in var.models :
      length(split("=", model)) == 2 ? "${split("=", model)[0]}=/models/${split("=", model)[1]}" : "/models/${model}"
    ])
    MODEL_DIR = ""
  }
}

# Created before the function (depends_on below) so Lambda never creates it itself without
# a retention period.
resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_338:Request logs are operational only and carry no audit value; 14 days (var.log_retention_days) keeps CloudWatch storage costs low instead of a year.
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts log data at rest by default; the logs hold no secrets that would justify a customer-managed KMS key.
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing is off: the execution role is deliberately limited to AWSLambdaBasicExecutionRole, and a single in-process model call per request gains little from traces.
  #checkov:skip=CKV_AWS_116:No dead-letter queue: the function is only invoked synchronously through its Function URL, and a DLQ applies to asynchronous invocations only.
  #checkov:skip=CKV_AWS_117:Not in a VPC: the function calls no network service at all (the model is baked into the image, HF_HUB_OFFLINE=1), and a VPC would add cost and cold-start latency for nothing.
  #checkov:skip=CKV_AWS_173:The environment holds only non-secret settings (backend name, precision, offline flag); Lambda already encrypts it at rest with an AWS-managed key.
  #checkov:skip=CKV_AWS_272:Lambda code signing applies to .zip packages only; this function is a container image, whose digest is pinned instead.
  function_name = var.function_name
  description   = length(var.models) == 0 ? "all-MiniLM-L6-v2 sentence embeddings (ONNX Runtime) behind a Function URL" : "${length(var.models)} models (MODELS=, ONNX Runtime) behind a Function URL"
  role          = aws_iam_role.lambda.arn

  package_type  = "Image"
  image_uri     = local.image_uri
  architectures = [var.architecture]

  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrent_executions

  environment {
    # The API key's location (api_key.tf), never the key itself.
    variables = merge(local.default_environment, local.models_environment, local.api_key_environment, var.environment)
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.lambda.name
    application_log_level = "INFO"
    system_log_level      = "INFO"
  }

  depends_on = [
    aws_cloudwatch_log_group.lambda,
    aws_iam_role_policy_attachment.basic_execution,
    aws_iam_role_policy.read_api_key,
    aws_secretsmanager_secret_version.api_key,
  ]

  lifecycle {
    precondition {
      # With AWS_IAM, the Authorization header carries the caller's SigV4 signature, so a bearer
      # key could never be presented: IAM already authenticates, a key would only lock callers out.
      condition     = var.api_key_source == "none" || var.function_url_auth_type == "NONE"
      error_message = "api_key_source needs function_url_auth_type = \"NONE\": with AWS_IAM the Authorization header carries the SigV4 signature, not the key."
    }
  }
}

resource "aws_lambda_function_url" "this" {
  function_name      = aws_lambda_function.this.function_name
  authorization_type = var.function_url_auth_type
  invoke_mode        = "BUFFERED"

  # Only when browser origins are configured; otherwise the URL answers no CORS preflight.
  dynamic "cors" {
    for_each = length(var.cors_allow_origins) > 0 ? [var.cors_allow_origins] : []

    content {
      allow_origins     = cors.value
      allow_methods     = ["GET", "POST"]
      allow_headers     = ["content-type", "authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"]
      expose_headers    = ["x-truncated-inputs"]
      allow_credentials = false
      max_age           = 3600
    }
  }
}

# A public (auth NONE) Function URL needs two statements in the function's resource policy:
# lambda:InvokeFunctionUrl (with the FunctionUrlAuthType = NONE condition) and, for Function
# URLs created since October 2025, lambda:InvokeFunction limited to calls that come through a
# Function URL (the lambda:InvokedViaFunctionUrl condition). The provider's
# aws_lambda_function_url also adds both, but only when the URL is created with NONE, under
# fixed statement ids and outside the state; these resources keep the grant in the state, also
# make a later switch from AWS_IAM to NONE work, and use their own statement ids so they never
# collide with the provider's ("FunctionURLAllowPublicAccess", "FunctionURLAllowInvokeAction").
resource "aws_lambda_permission" "function_url_public" {
  #checkov:skip=CKV_AWS_301:Public access is the explicit opt-in var.function_url_auth_type = "NONE"; this statement exists only then and is limited to Function URL calls by the FunctionUrlAuthType = NONE condition.
  count = var.function_url_auth_type == "NONE" ? 1 : 0

  statement_id           = "AllowPublicInvokeFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "function_url_invoke" {
  #checkov:skip=CKV_AWS_301:Public access is the explicit opt-in var.function_url_auth_type = "NONE"; this statement exists only then and is limited to calls that come through the Function URL (lambda:InvokedViaFunctionUrl = true).
  count = var.function_url_auth_type == "NONE" ? 1 : 0

  statement_id             = "AllowPublicInvokeViaFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.this.function_name
  principal                = "*"
  invoked_via_function_url = true
}
