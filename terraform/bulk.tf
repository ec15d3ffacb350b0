# The optional bulk function (var.bulk_function_enabled): <function_name>-bulk runs the bulk image
# (Dockerfile.lambda --build-arg BULK=1, with pyarrow and the client package) for embed-corpus's
# worker mode. embed-corpus invokes it directly (lambda:InvokeFunction, no Function URL); each
# invocation reads its split of the corpus from S3 and writes its Parquet part back. Its own role
# may read bulk_input_prefixes and write bulk_output_prefixes, nothing else: embed-corpus lists the
# input, deletes the probe object and writes the manifest with the caller's own credentials.
# Nothing here exists with the default bulk_function_enabled = false.
locals {
  bulk_count = var.bulk_function_enabled ? 1 : 0

  bulk_image_uri = (
    var.bulk_image_digest != ""
    ? "${aws_ecr_repository.this.repository_url}@${var.bulk_image_digest}"
    : "${aws_ecr_repository.this.repository_url}:${var.bulk_image_tag}"
  )

  # "bucket/prefix", "s3://bucket/prefix/" or "bucket" -> every object below that folder.
  bulk_input_arns = [
    for prefix in var.bulk_input_prefixes :
    "arn:${data.aws_partition.current.partition}:s3:::${trimsuffix(trimprefix(prefix, "s3://"), "/")}/*"
  ]
  bulk_output_arns = [
    for prefix in var.bulk_output_prefixes :
    "arn:${data.aws_partition.current.partition}:s3:::${trimsuffix(trimprefix(prefix, "s3://"), "/")}/*"
  ]
  bulk_s3_policy_count = var.bulk_function_enabled && length(local.bulk_input_arns) + length(local.bulk_output_arns) > 0 ? 1 : 0
}

resource "aws_cloudwatch_log_group" "bulk" {
  #checkov:skip=CKV_AWS_338:Shard-job logs are operational only and carry no audit value; var.log_retention_days (14 by default) keeps CloudWatch storage costs low instead of a year.
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts log data at rest by default; the logs hold no secrets (no corpus text, only counts and timings) that would justify a customer-managed KMS key.
  count             = local.bulk_count
  name              = "/aws/lambda/${var.function_name}-bulk"
  retention_in_days = var.log_retention_days
}

resource "aws_iam_role" "bulk" {
  count = local.bulk_count
  # IAM role names are limited to 64 characters: 52 + "-bulk-lambda".
  name               = "${substr(var.function_name, 0, 52)}-bulk-lambda"
  description        = "Execution role of the ${var.function_name}-bulk Lambda function (CloudWatch Logs; s3:GetObject on bulk_input_prefixes, s3:PutObject on bulk_output_prefixes)"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

resource "aws_iam_role_policy_attachment" "bulk_basic_execution" {
  count      = local.bulk_count
  role       = aws_iam_role.bulk[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

# Only the object-level actions a shard job performs: GetObject (ranged reads, and the HEAD of a
# probe) below the input folders, PutObject (the parts, the rejects, the probe object) below the
# output folders. No ListBucket, DeleteObject or bucket-level action. Objects encrypted with a
# customer-managed KMS key also need kms:Decrypt / kms:GenerateDataKey, not granted here.
data "aws_iam_policy_document" "bulk_s3" {
  count = local.bulk_s3_policy_count

  dynamic "statement" {
    for_each = length(local.bulk_input_arns) > 0 ? [local.bulk_input_arns] : []

    content {
      sid       = "ReadInputObjects"
      effect    = "Allow"
      actions   = ["s3:GetObject"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(local.bulk_output_arns) > 0 ? [local.bulk_output_arns] : []

    content {
      sid       = "WriteOutputObjects"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = statement.value
    }
  }
}

resource "aws_iam_role_policy" "bulk_s3" {
  count  = local.bulk_s3_policy_count
  name   = "bulk-s3-objects"
  role   = aws_iam_role.bulk[0].id
  policy = data.aws_iam_policy_document.bulk_s3[0].json
}

resource "aws_lambda_function" "bulk" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing is off: the execution role is deliberately limited to AWSLambdaBasicExecutionRole and the S3 object grants, and embed-corpus already reports each shard job's time and billed duration.
  #checkov:skip=CKV_AWS_116:No dead-letter queue: embed-corpus invokes the function synchronously (RequestResponse) and retries failed shard jobs itself; a DLQ applies to asynchronous invocations only.
  #checkov:skip=CKV_AWS_117:Not in a VPC: the function reaches only S3 through its public regional endpoint (the model is baked into the image, HF_HUB_OFFLINE=1); a VPC would need a NAT gateway or an S3 gateway endpoint, adding cost and cold-start latency for nothing.
  #checkov:skip=CKV_AWS_173:The environment holds only non-secret settings (backend name, precision, offline flag); Lambda already encrypts it at rest with an AWS-managed key.
  #checkov:skip=CKV_AWS_272:Lambda code signing applies to .zip packages only; this function is a container image, whose digest is pinned instead (bulk_image_digest).
  count         = local.bulk_count
  function_name = "${var.function_name}-bulk"
  description   = "embed-corpus shard jobs: all-MiniLM-L6-v2 (ONNX Runtime) reads a split from S3 and writes its Parquet part"
  role          = aws_iam_role.bulk[0].arn

  package_type  = "Image"
  image_uri     = local.bulk_image_uri
  architectures = [var.architecture]

  memory_size                    = var.bulk_memory_size
  timeout                        = var.bulk_timeout
  reserved_concurrent_executions = var.bulk_reserved_concurrent_executions

  environment {
    # The query function's settings, without the API key's location: direct invocations never
    # need the key, and this role may not read it.
    variables = merge(local.default_environment, var.environment)
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.bulk[0].name
    application_log_level = "INFO"
    system_log_level      = "INFO"
  }

  depends_on = [
    aws_cloudwatch_log_group.bulk,
    aws_iam_role_policy_attachment.bulk_basic_execution,
    aws_iam_role_policy.bulk_s3,
  ]

  lifecycle {
    precondition {
      condition     = length(var.function_name) <= 59
      error_message = "bulk_function_enabled needs a function_name of at most 59 characters: Lambda function names are limited to 64, and the bulk function is <function_name>-bulk."
    }
  }
}

# A bulk job at full width must never throttle live queries: the query function's own reservation
# (reserved_concurrent_executions) guarantees it capacity no other function can take, and a
# bulk reservation caps the job. With neither, both draw from the same unreserved pool.
check "bulk_jobs_leave_live_queries_capacity" {
  assert {
    condition     = !var.bulk_function_enabled || var.reserved_concurrent_executions != -1 || var.bulk_reserved_concurrent_executions != -1
    error_message = "With reserved_concurrent_executions = -1 and bulk_reserved_concurrent_executions = -1, a bulk job's workers share the account's unreserved concurrency with live queries and can throttle them: reserve concurrency for the query function, or cap the bulk function."
  }
}
