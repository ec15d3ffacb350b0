# AWS Batch (var.enable_batch): embed-corpus --target batch://<function_name>-batch runs its shard
# jobs server-side. The client writes a plan to S3 and submits array jobs of the job definition
# <function_name>-batch-worker; each child runs `embed-corpus-worker run <plan>` in the worker
# image (Dockerfile.lambda's batch stage), takes its splits by AWS_BATCH_JOB_ARRAY_INDEX and
# commits Parquet parts below OUTPUT/. One queue: Fargate Spot first, on-demand Fargate second
# (used when Spot has no capacity). The workers reach ECR, CloudWatch Logs and S3 with a public
# IP and, for S3, through a free gateway endpoint: no NAT gateway. Nothing here exists with the
# default enable_batch = false.
locals {
  batch_count = var.enable_batch ? 1 : 0
  # The client's default --batch-job-definition and the queue, named like <function_name>-bulk.
  batch_queue_name          = "${var.function_name}-batch"
  batch_job_definition_name = "${var.function_name}-batch-worker"
  # The queue's compute environments, in its order: Fargate Spot, then on-demand Fargate when
  # Spot has no capacity. Each is named <function_name>-batch-fargate-spot or -batch-fargate.
  batch_compute_types = var.enable_batch ? ["FARGATE_SPOT", "FARGATE"] : []

  batch_image_uri = (
    var.batch_image_digest != ""
    ? "${aws_ecr_repository.this.repository_url}@${var.batch_image_digest}"
    : "${aws_ecr_repository.this.repository_url}:${var.batch_image_tag}"
  )
  # Fargate's least memory for the task size: 2 GiB per vCPU.
  batch_memory = var.batch_memory == 0 ? var.batch_vcpus * 2048 : var.batch_memory

  # embed-corpus-worker's exit status for bad input (rows, plan, grants): retrying cannot help.
  batch_bad_input_exit_code = "3"

  # Without batch_subnet_ids, the network below is created.
  batch_network_count      = var.enable_batch && length(var.batch_subnet_ids) == 0 ? 1 : 0
  batch_azs                = local.batch_network_count == 1 ? slice(data.aws_availability_zones.batch[0].names, 0, min(3, length(data.aws_availability_zones.batch[0].names))) : []
  batch_subnet_ids         = length(var.batch_subnet_ids) > 0 ? var.batch_subnet_ids : aws_subnet.batch[*].id
  batch_security_group_ids = length(var.batch_subnet_ids) > 0 ? var.batch_security_group_ids : aws_security_group.batch[*].id

  # "bucket/prefix", "s3://bucket/prefix/" or "bucket" -> (bucket, "prefix/" or "").
  batch_input_folders = [
    for prefix in var.batch_input_prefixes : split("/", trimsuffix(trimprefix(prefix, "s3://"), "/"))
  ]
  batch_output_folders = [
    for prefix in var.batch_output_prefixes : split("/", trimsuffix(trimprefix(prefix, "s3://"), "/"))
  ]
  batch_input_arns = [
    for parts in local.batch_input_folders : "arn:${data.aws_partition.current.partition}:s3:::${join("/", parts)}/*"
  ]
  batch_output_arns = [
    for parts in local.batch_output_folders : "arn:${data.aws_partition.current.partition}:s3:::${join("/", parts)}/*"
  ]
  # s3:ListBucket is a bucket-level action: one statement per output folder, limited by s3:prefix.
  batch_output_listings = [
    for parts in local.batch_output_folders : {
      bucket = "arn:${data.aws_partition.current.partition}:s3:::${parts[0]}"
      prefix = length(parts) > 1 ? "${join("/", slice(parts, 1, length(parts)))}/*" : "*"
    }
  ]
  batch_s3_policy_count = var.enable_batch && length(local.batch_input_arns) + length(local.batch_output_arns) > 0 ? 1 : 0

  batch_environment = [
    for name, value in merge(local.default_environment, var.environment) : { name = name, value = value }
  ]
}

# --- network: public subnets, outbound HTTPS only, S3 through a gateway endpoint ----------------

data "aws_availability_zones" "batch" {
  #checkov:skip=CKV_AWS_394:Only the first three zone names are used (slice below), and names sort alphabetically, so a zone AWS adds later sorts after them and never moves a subnet.
  count = local.batch_network_count
  state = "available"
}

resource "aws_vpc" "batch" {
  #checkov:skip=CKV2_AWS_11:No VPC flow logs: the VPC carries only the workers' HTTPS calls to ECR, CloudWatch Logs and S3, which CloudTrail and S3 already record; flow logs would add CloudWatch ingestion cost per GB for no audit value.
  count                = local.batch_network_count
  cidr_block           = var.batch_vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = local.batch_queue_name
  }
}

# The VPC's default group stays closed (nothing uses it); the workers get their own below.
resource "aws_default_security_group" "batch" {
  count  = local.batch_network_count
  vpc_id = aws_vpc.batch[0].id
}

resource "aws_internet_gateway" "batch" {
  count  = local.batch_network_count
  vpc_id = aws_vpc.batch[0].id
}

resource "aws_subnet" "batch" {
  count             = length(local.batch_azs)
  vpc_id            = aws_vpc.batch[0].id
  availability_zone = local.batch_azs[count.index]
  # /20s of the VPC: 4,091 task addresses per zone. Public IPs come from the job definition
  # (assignPublicIp), not from the subnet.
  cidr_block = cidrsubnet(var.batch_vpc_cidr, 20 - tonumber(split("/", var.batch_vpc_cidr)[1]), count.index)

  tags = {
    Name = "${local.batch_queue_name}-${local.batch_azs[count.index]}"
  }
}

resource "aws_route_table" "batch" {
  count  = local.batch_network_count
  vpc_id = aws_vpc.batch[0].id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.batch[0].id
  }
}

resource "aws_route_table_association" "batch" {
  count          = length(local.batch_azs)
  subnet_id      = aws_subnet.batch[count.index].id
  route_table_id = aws_route_table.batch[0].id
}

# S3 traffic (the corpus, the parts, and ECR's image layers, which ECR serves from S3) stays on
# AWS's network through a gateway endpoint, which has no hourly or per-GB charge.
resource "aws_vpc_endpoint" "batch_s3" {
  count             = local.batch_network_count
  vpc_id            = aws_vpc.batch[0].id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.batch[0].id]
}

resource "aws_security_group" "batch" {
  count       = local.batch_network_count
  name        = "${local.batch_queue_name}-workers"
  description = "embed-corpus Batch workers: no inbound traffic; outbound HTTPS to ECR, CloudWatch Logs and S3"
  vpc_id      = aws_vpc.batch[0].id

  egress {
    description = "HTTPS to AWS APIs (ECR, CloudWatch Logs, S3); DNS goes to the VPC resolver, which security groups do not filter"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# --- roles ------------------------------------------------------------------------------------

data "aws_iam_policy_document" "batch_assume_role" {
  count = local.batch_count

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["batch.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "ecs_tasks_assume_role" {
  count = local.batch_count

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Batch's own role for managing the compute environments, kept in the state (and destroyed with
# them) rather than relying on the account's service-linked role.
resource "aws_iam_role" "batch_service" {
  count              = local.batch_count
  name               = "${substr(var.function_name, 0, 50)}-batch-service"
  description        = "AWS Batch service role of the ${local.batch_queue_name} compute environments"
  assume_role_policy = data.aws_iam_policy_document.batch_assume_role[0].json
}

resource "aws_iam_role_policy_attachment" "batch_service" {
  count      = local.batch_count
  role       = aws_iam_role.batch_service[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSBatchServiceRole"
}

# What Fargate does before the worker starts: pull the image, send its output to the log group.
resource "aws_iam_role" "batch_execution" {
  count              = local.batch_count
  name               = "${substr(var.function_name, 0, 48)}-batch-execution"
  description        = "Task execution role of ${local.batch_job_definition_name}: pulls the worker image from ECR, writes its log group"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume_role[0].json
}

data "aws_iam_policy_document" "batch_execution" {
  count = local.batch_count

  statement {
    sid       = "EcrLogin"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # ecr:GetAuthorizationToken has no resource-level permissions
  }

  statement {
    sid       = "PullWorkerImage"
    effect    = "Allow"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid       = "WriteWorkerLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.batch[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "batch_execution" {
  count  = local.batch_count
  name   = "pull-image-write-logs"
  role   = aws_iam_role.batch_execution[0].id
  policy = data.aws_iam_policy_document.batch_execution[0].json
}

# What the worker itself may do: S3 below the folders named, nothing else.
resource "aws_iam_role" "batch_job" {
  count              = local.batch_count
  name               = "${substr(var.function_name, 0, 54)}-batch-job"
  description        = "Job role of ${local.batch_job_definition_name} (s3:GetObject on batch_input_prefixes; s3:GetObject, s3:PutObject and a prefix-limited s3:ListBucket on batch_output_prefixes)"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume_role[0].json
}

# Object-level actions only, below the named folders: GetObject (ranged reads of the corpus; the
# plan and the parts below OUTPUT/), PutObject (parts, rejects, _SUCCESS), and ListBucket limited
# to the output folder by s3:prefix (so a missing part answers 404 instead of 403, and the final
# job can list the parts). No DeleteObject and no other bucket-level action.
data "aws_iam_policy_document" "batch_s3" {
  count = local.batch_s3_policy_count

  dynamic "statement" {
    for_each = length(local.batch_input_arns) > 0 ? [local.batch_input_arns] : []

    content {
      sid       = "ReadInputObjects"
      effect    = "Allow"
      actions   = ["s3:GetObject"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(local.batch_output_arns) > 0 ? [local.batch_output_arns] : []

    content {
      sid       = "ReadWriteOutputObjects"
      effect    = "Allow"
      actions   = ["s3:GetObject", "s3:PutObject"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = local.batch_output_listings

    content {
      sid       = "ListOutputFolder${statement.key}"
      effect    = "Allow"
      actions   = ["s3:ListBucket"]
      resources = [statement.value.bucket]

      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [statement.value.prefix]
      }
    }
  }
}

resource "aws_iam_role_policy" "batch_s3" {
  count  = local.batch_s3_policy_count
  name   = "batch-s3-objects"
  role   = aws_iam_role.batch_job[0].id
  policy = data.aws_iam_policy_document.batch_s3[0].json
}

# --- logs -------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "batch" {
  #checkov:skip=CKV_AWS_338:Worker logs are operational only and carry no audit value; var.log_retention_days (14 by default) keeps CloudWatch storage costs low instead of a year.
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts log data at rest by default; the logs hold no secrets (no corpus text, only counts and timings) that would justify a customer-managed KMS key.
  count             = local.batch_count
  name              = "/aws/batch/${local.batch_job_definition_name}"
  retention_in_days = var.log_retention_days
}

# --- compute: Fargate Spot first, on-demand Fargate second ---------------------------------------

resource "aws_batch_compute_environment" "this" {
  for_each     = toset(local.batch_compute_types)
  name         = "${var.function_name}-batch-${lower(replace(each.key, "_", "-"))}"
  type         = "MANAGED"
  state        = "ENABLED"
  service_role = aws_iam_role.batch_service[0].arn

  compute_resources {
    type               = each.key
    max_vcpus          = var.batch_max_vcpus
    subnets            = local.batch_subnet_ids
    security_group_ids = local.batch_security_group_ids
  }

  # The role's policy must outlive the environment, or Batch cannot tear it down on destroy.
  depends_on = [aws_iam_role_policy_attachment.batch_service, aws_route_table_association.batch, aws_vpc_endpoint.batch_s3]

  lifecycle {
    precondition {
      condition     = length(var.batch_subnet_ids) > 0 || length(var.batch_security_group_ids) == 0
      error_message = "batch_security_group_ids applies only with batch_subnet_ids: with the VPC batch.tf creates, it creates the workers' security group too."
    }
    precondition {
      condition     = length(var.batch_subnet_ids) == 0 || length(var.batch_security_group_ids) > 0
      error_message = "batch_subnet_ids needs batch_security_group_ids: the workers need a security group that allows outbound HTTPS."
    }
  }
}

# Where the two environments were separate resources.
moved {
  from = aws_batch_compute_environment.fargate_spot[0]
  to   = aws_batch_compute_environment.this["FARGATE_SPOT"]
}

moved {
  from = aws_batch_compute_environment.fargate[0]
  to   = aws_batch_compute_environment.this["FARGATE"]
}

resource "aws_batch_job_queue" "this" {
  count    = local.batch_count
  name     = local.batch_queue_name
  state    = "ENABLED"
  priority = 1

  dynamic "compute_environment_order" {
    for_each = local.batch_compute_types
    content {
      order               = compute_environment_order.key + 1
      compute_environment = aws_batch_compute_environment.this[compute_environment_order.value].arn
    }
  }
}

# --- the job ----------------------------------------------------------------------------------

resource "aws_batch_job_definition" "worker" {
  count                 = local.batch_count
  name                  = local.batch_job_definition_name
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  container_properties = jsonencode({
    image = local.batch_image_uri
    # The client passes the plan's s3:// URI as the parameter "plan" at submit; the final job
    # overrides the command with ["embed-corpus-worker", "finish", "<plan uri>"].
    command          = ["embed-corpus-worker", "run", "Ref::plan"]
    jobRoleArn       = aws_iam_role.batch_job[0].arn
    executionRoleArn = aws_iam_role.batch_execution[0].arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.batch_vcpus) },
      { type = "MEMORY", value = tostring(local.batch_memory) },
    ]
    environment = local.batch_environment
    # A public IP reaches ECR and CloudWatch Logs through the internet gateway: no NAT gateway.
    networkConfiguration         = { assignPublicIp = "ENABLED" }
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    # Fargate Spot runs X86_64 tasks only, so the worker image is always built for linux/amd64.
    runtimePlatform = { operatingSystemFamily = "LINUX", cpuArchitecture = "X86_64" }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.batch[0].name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = "worker"
      }
    }
  })

  # Each attempt: a Spot reclaim retries (the worker skips the parts it already committed, so a
  # retry never writes a row twice); bad input exits at once. Batch retries whatever matches no
  # entry, so an instance lost for another reason, or an out-of-memory kill, is retried too.
  retry_strategy {
    attempts = var.batch_retry_attempts

    # EC2 Spot (and any instance) reclaimed under the job: "Host EC2 (instance i-...) terminated."
    evaluate_on_exit {
      action           = "RETRY"
      on_status_reason = "Host EC2*"
    }

    # Fargate Spot's two-minute warning: the task stops with "Your Spot Task was interrupted."
    evaluate_on_exit {
      action           = "RETRY"
      on_status_reason = "Your Spot Task was interrupted*"
    }

    # Bad input: another attempt would fail the same way.
    evaluate_on_exit {
      action       = "EXIT"
      on_exit_code = local.batch_bad_input_exit_code
    }
  }

  timeout {
    attempt_duration_seconds = var.batch_timeout
  }

  lifecycle {
    precondition {
      condition = (
        (var.batch_vcpus == 1 && local.batch_memory >= 2048 && local.batch_memory <= 8192)
        || (var.batch_vcpus == 2 && local.batch_memory >= 4096 && local.batch_memory <= 16384)
        || (var.batch_vcpus == 4 && local.batch_memory >= 8192 && local.batch_memory <= 30720)
        || (var.batch_vcpus == 8 && local.batch_memory >= 16384 && local.batch_memory <= 61440 && local.batch_memory % 4096 == 0)
        || (var.batch_vcpus == 16 && local.batch_memory >= 32768 && local.batch_memory <= 122880 && local.batch_memory % 8192 == 0)
      )
      error_message = "batch_memory does not fit batch_vcpus on Fargate: 1 vCPU takes 2048-8192 MiB, 2 take 4096-16384, 4 take 8192-30720 (steps of 1024), 8 take 16384-61440 (steps of 4096), 16 take 32768-122880 (steps of 8192)."
    }
  }
}
