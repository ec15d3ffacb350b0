variable "region" {
  description = "AWS region to deploy into, e.g. eu-west-1."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2,4}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1, eu-west-1 or us-gov-west-1."
  }
}

variable "function_name" {
  description = "Name of the Lambda function (also names its log group /aws/lambda/<name> and its IAM role)."
  type        = string
  default     = "embedding-model"

  validation {
    # Lambda's rule for function names: 1-64 letters, digits, hyphens or underscores.
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.function_name))
    error_message = "function_name must be 1-64 characters of letters, digits, hyphens (-) or underscores (_)."
  }
}

variable "repository_name" {
  description = "Name of the ECR repository that holds the Lambda container image."
  type        = string
  default     = "embedding_model"

  validation {
    # ECR's rule: 2-256 characters, lowercase, components separated by '/', with '.', '_' or '-' inside.
    condition     = length(var.repository_name) >= 2 && length(var.repository_name) <= 256 && can(regex("^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$", var.repository_name))
    error_message = "repository_name must be 2-256 lowercase characters: letters, digits and '.', '_', '-' or '/' between them."
  }
}

variable "image_tag" {
  description = "Image tag in the ECR repository, used only when image_digest is empty. scripts/deploy.sh always pins image_digest instead, because Lambda resolves a tag once and would not notice a re-pushed tag."
  type        = string
  default     = "latest"

  validation {
    # Docker's rule for tags.
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid image tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
  }
}

variable "image_digest" {
  description = "Digest (sha256:<64 hex>) of the image to run. When set, the function uses <repository_url>@<digest>, so exactly that image runs; when empty, <repository_url>:<image_tag>. scripts/deploy.sh sets it to the digest it just pushed."
  type        = string
  default     = ""

  validation {
    condition     = var.image_digest == "" || can(regex("^sha256:[0-9a-f]{64}$", var.image_digest))
    error_message = "image_digest must be empty or sha256: followed by 64 lowercase hex digits."
  }
}

variable "memory_size" {
  description = "Memory for the function in MB. Lambda allocates CPU in proportion: 1769 MB is exactly one vCPU."
  type        = number
  default     = 1769

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240 && floor(var.memory_size) == var.memory_size
    error_message = "memory_size must be a whole number of MB between 128 and 10240."
  }
}

variable "timeout" {
  description = "Function timeout in seconds (a cold start loads the model, so leave headroom)."
  type        = number
  default     = 30

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900 && floor(var.timeout) == var.timeout
    error_message = "timeout must be a whole number of seconds between 1 and 900."
  }
}

variable "architecture" {
  description = "Instruction set of the function and of the image: x86_64 or arm64. The image must be built for the same platform (linux/amd64 or linux/arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be \"x86_64\" or \"arm64\"."
  }
}

variable "precision" {
  description = "Model precision the function runs (EMBEDDING_PRECISION): \"fp32\" (the default; vectors equal sentence-transformers) or \"int8\" (the quantised economy file, about half the CPU time per passage). The image must be built with the same --build-arg PRECISION, which bakes in only that ONNX file; scripts/deploy.sh --precision sets both."
  type        = string
  default     = "fp32"

  validation {
    condition     = contains(["fp32", "int8"], var.precision)
    error_message = "precision must be \"fp32\" or \"int8\"."
  }
}

variable "models" {
  description = "The prepared models the one function serves together (MODELS=, docs/containers.md): each a folder name the image carries under /models (Dockerfile.lambda --build-arg MODELS=\"all-MiniLM-L6-v2 ms-marco-MiniLM-L6-v2 ...\"), or id=folder to answer under another model id, e.g. [\"all-MiniLM-L6-v2\", \"cross-encoder/ms-marco-MiniLM-L6-v2=ms-marco-MiniLM-L6-v2\"]. Empty (the default): the image's one model (MODEL_DIR). Every model loads in the init phase, so memory_size must hold them all and a cold start loads them all (docs/lambda.md)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for model in var.models : can(regex("^([^=,]+=)?[A-Za-z0-9][A-Za-z0-9._-]*$", model))])
    error_message = "each of models must be a folder name under /models (letters, digits, '.', '_', '-'), optionally after an id and '=': no commas, no paths."
  }
}

variable "reserved_concurrent_executions" {
  description = "Concurrency reserved for (and capped at) this function: a cost ceiling for a URL anyone may call. -1 means unreserved (no cap). Lambda refuses a reservation that leaves the account fewer than 10 unreserved executions, so on an account whose concurrency quota is still 10 use -1."
  type        = number
  default     = 10

  validation {
    condition     = (var.reserved_concurrent_executions == -1 || var.reserved_concurrent_executions >= 1) && floor(var.reserved_concurrent_executions) == var.reserved_concurrent_executions
    error_message = "reserved_concurrent_executions must be -1 (unreserved) or a whole number >= 1 (0 would throttle every call)."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the function's logs (0 = never expire)."
  type        = number
  default     = 14

  validation {
    # The values CloudWatch Logs accepts for retentionInDays.
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "function_url_auth_type" {
  description = "Auth type of the Function URL: AWS_IAM (callers sign requests with SigV4; the default) or NONE (public: anyone with the URL can call it and you pay for it; reserved_concurrent_executions caps the damage)."
  type        = string
  default     = "AWS_IAM"

  validation {
    condition     = contains(["AWS_IAM", "NONE"], var.function_url_auth_type)
    error_message = "function_url_auth_type must be \"AWS_IAM\" or \"NONE\"."
  }
}

variable "cors_allow_origins" {
  description = "Origins allowed to call the Function URL from a browser, e.g. [\"https://app.example.com\"]. Empty (the default) configures no CORS at all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for origin in var.cors_allow_origins : origin == "*" || can(regex("^https?://[^\\s]+$", origin))])
    error_message = "Each cors_allow_origins entry must be \"*\" or an origin starting with http:// or https://."
  }
}

variable "environment" {
  description = "Extra environment variables for the function, merged over the defaults (EMBEDDING_BACKEND=onnx, EMBEDDING_PRECISION=var.precision, HF_HUB_OFFLINE=1)."
  type        = map(string)
  default     = {}

  validation {
    # Lambda's rule for environment variable names.
    condition     = alltrue([for name in keys(var.environment) : can(regex("^[A-Za-z][A-Za-z0-9_]+$", name))])
    error_message = "environment variable names must start with a letter and contain only letters, digits and underscores (at least 2 characters)."
  }
}

variable "ecr_max_images" {
  description = "How many of the most recent images the ECR lifecycle policy keeps; older ones expire."
  type        = number
  default     = 5

  validation {
    condition     = var.ecr_max_images >= 1 && var.ecr_max_images <= 1000 && floor(var.ecr_max_images) == var.ecr_max_images
    error_message = "ecr_max_images must be a whole number between 1 and 1000."
  }
}

variable "tags" {
  description = "Tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default = {
    Project   = "embedding-model"
    ManagedBy = "terraform"
  }
}

variable "api_key_source" {
  description = "Where the function reads its API key (Authorization: Bearer <key>) from, once per cold start: \"none\" (no key; the default), \"secretsmanager\" (a Secrets Manager secret) or \"ssm\" (an SSM SecureString parameter). A key needs function_url_auth_type = \"NONE\": with AWS_IAM the Authorization header carries the SigV4 signature."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "secretsmanager", "ssm"], var.api_key_source)
    error_message = "api_key_source must be \"none\", \"secretsmanager\" or \"ssm\"."
  }
}

variable "api_key_secret_arn" {
  description = "ARN of an existing secret (api_key_source = \"secretsmanager\") or SSM parameter (\"ssm\") that holds the API key. Empty (the default) creates one named after the function; the execution role may read only this one."
  type        = string
  default     = ""

  validation {
    condition     = var.api_key_secret_arn == "" || can(regex("^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+|ssm:[a-z0-9-]+:[0-9]{12}:parameter/.+)$", var.api_key_secret_arn))
    error_message = "api_key_secret_arn must be empty or the ARN of a Secrets Manager secret (arn:aws:secretsmanager:...:secret:...) or of an SSM parameter (arn:aws:ssm:...:parameter/...)."
  }
}

variable "api_key_value" {
  description = "The API key to store when Terraform creates the secret. Empty (the default) lets Secrets Manager generate 48 random letters and digits. Either way the key is in the Terraform state: keep the state private, or pass api_key_secret_arn instead."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.api_key_value == "" || can(regex("^[!-~]{16,}$", var.api_key_value))
    error_message = "api_key_value must be empty or at least 16 printable ASCII characters without spaces (it travels in an HTTP header)."
  }
}

# --- the optional bulk function (bulk.tf): embed-corpus's shard jobs ------------------------------

variable "bulk_function_enabled" {
  description = "Create a second function, <function_name>-bulk, running the bulk image (Dockerfile.lambda --build-arg BULK=1) for embed-corpus's worker mode: each invocation reads a split of the corpus from S3 and writes its Parquet part there. It has no Function URL (embed-corpus invokes it directly) and its own execution role, which may read bulk_input_prefixes and write bulk_output_prefixes only."
  type        = bool
  default     = false
}

variable "bulk_image_tag" {
  description = "Tag of the bulk image in the same ECR repository, used only when bulk_image_digest is empty (Lambda resolves a tag once, so prefer the digest)."
  type        = string
  default     = "bulk"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.bulk_image_tag))
    error_message = "bulk_image_tag must be a valid image tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
  }
}

variable "bulk_image_digest" {
  description = "Digest (sha256:<64 hex>) of the bulk image to run; when empty, <repository_url>:<bulk_image_tag>. Build it with the query image's --build-arg PRECISION: the bulk function runs the same EMBEDDING_PRECISION (var.precision)."
  type        = string
  default     = ""

  validation {
    condition     = var.bulk_image_digest == "" || can(regex("^sha256:[0-9a-f]{64}$", var.bulk_image_digest))
    error_message = "bulk_image_digest must be empty or sha256: followed by 64 lowercase hex digits."
  }
}

variable "bulk_memory_size" {
  description = "Memory of the bulk function in MB. 1769 MB is one vCPU and the handler runs one model thread per 1769 MB (rounded down), so 1769 is the lowest cost per text; 3538 (two threads) finishes each shard sooner at the same or a higher cost per text. Values in between pay for CPU no thread uses."
  type        = number
  default     = 1769

  validation {
    condition     = var.bulk_memory_size >= 128 && var.bulk_memory_size <= 10240 && floor(var.bulk_memory_size) == var.bulk_memory_size
    error_message = "bulk_memory_size must be a whole number of MB between 128 and 10240."
  }
}

variable "bulk_timeout" {
  description = "Timeout of the bulk function in seconds: one invocation embeds a whole shard (embed-corpus --shard-size texts, 10,000 by default), so the default is Lambda's maximum."
  type        = number
  default     = 900

  validation {
    condition     = var.bulk_timeout >= 1 && var.bulk_timeout <= 900 && floor(var.bulk_timeout) == var.bulk_timeout
    error_message = "bulk_timeout must be a whole number of seconds between 1 and 900."
  }
}

variable "bulk_reserved_concurrent_executions" {
  description = "Concurrency reserved for (and capped at) the bulk function. -1 (the default): unreserved, so a job may use the account's unreserved pool and an idle bulk function withholds nothing; live queries stay safe through the query function's own reservation (reserved_concurrent_executions), which no other function can take. A number caps every job at that many workers (and is embed-corpus's default --concurrency), at the price of withholding it from the account at all times."
  type        = number
  default     = -1

  validation {
    condition     = (var.bulk_reserved_concurrent_executions == -1 || var.bulk_reserved_concurrent_executions >= 1) && floor(var.bulk_reserved_concurrent_executions) == var.bulk_reserved_concurrent_executions
    error_message = "bulk_reserved_concurrent_executions must be -1 (unreserved) or a whole number >= 1 (0 would throttle every job)."
  }
}

variable "bulk_input_prefixes" {
  description = "S3 folders the bulk function may read (s3:GetObject on every object below each), as \"bucket/prefix\" or \"s3://bucket/prefix/\"; \"bucket\" alone means the whole bucket. Empty (the default): no read grant."
  type        = list(string)
  default     = []

  validation {
    # A bucket name (3-63 lowercase letters, digits, '.', '-'), then an optional key prefix without
    # IAM wildcards, which would widen the grant.
    condition     = alltrue([for prefix in var.bulk_input_prefixes : can(regex("^(s3://)?[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^*?]*)?$", prefix))])
    error_message = "Each bulk_input_prefixes entry must be \"bucket/prefix\" or \"s3://bucket/prefix/\" (a valid bucket name, no * or ? wildcards)."
  }
}

variable "bulk_output_prefixes" {
  description = "S3 folders the bulk function may write Parquet parts to (s3:PutObject on every object below each), as \"bucket/prefix\" or \"s3://bucket/prefix/\". Empty (the default): no write grant."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for prefix in var.bulk_output_prefixes : can(regex("^(s3://)?[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^*?]*)?$", prefix))])
    error_message = "Each bulk_output_prefixes entry must be \"bucket/prefix\" or \"s3://bucket/prefix/\" (a valid bucket name, no * or ? wildcards)."
  }
}

# --- AWS Batch (batch.tf): embed-corpus --target batch://QUEUE -----------------------------------

variable "enable_batch" {
  description = "Create the AWS Batch resources for embed-corpus --target batch://<queue>: a Fargate Spot compute environment with on-demand Fargate second in one job queue, <function_name>-batch, the job definition <function_name>-batch-worker (the worker image, embed-corpus-worker), its execution and job roles, its log group and, unless batch_subnet_ids is given, a VPC with public subnets and an S3 gateway endpoint (no NAT gateway)."
  type        = bool
  default     = false
}

variable "batch_image_tag" {
  description = "Tag of the Batch worker image (Dockerfile.lambda's batch stage) in the same ECR repository, used only when batch_image_digest is empty. scripts/deploy.sh deploy --batch pushes it and pins the digest."
  type        = string
  default     = "batch"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.batch_image_tag))
    error_message = "batch_image_tag must be a valid image tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
  }
}

variable "batch_image_digest" {
  description = "Digest (sha256:<64 hex>) of the Batch worker image; when empty, <repository_url>:<batch_image_tag>. Build it with the query image's --build-arg PRECISION: the worker runs the same EMBEDDING_PRECISION (var.precision)."
  type        = string
  default     = ""

  validation {
    condition     = var.batch_image_digest == "" || can(regex("^sha256:[0-9a-f]{64}$", var.batch_image_digest))
    error_message = "batch_image_digest must be empty or sha256: followed by 64 lowercase hex digits."
  }
}

variable "batch_max_vcpus" {
  description = "Most vCPUs each compute environment (Fargate Spot, and on-demand Fargate) runs at once: a job's width is batch_max_vcpus / batch_vcpus children. The account's Fargate vCPU quotas (Service Quotas: Fargate Spot vCPU and Fargate On-Demand vCPU resource count) cap it too."
  type        = number
  default     = 256

  validation {
    condition     = var.batch_max_vcpus >= 1 && var.batch_max_vcpus <= 100000 && floor(var.batch_max_vcpus) == var.batch_max_vcpus
    error_message = "batch_max_vcpus must be a whole number between 1 and 100000."
  }
}

variable "batch_vcpus" {
  description = "vCPUs of one worker (a Fargate task): 1, 2, 4, 8 or 16. The worker uses all of them; fewer, larger tasks also need fewer public IPv4 addresses."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2, 4, 8, 16], var.batch_vcpus)
    error_message = "batch_vcpus must be 1, 2, 4, 8 or 16 (Fargate's task sizes)."
  }
}

variable "batch_memory" {
  description = "Memory of one worker in MiB; Fargate accepts 2048-8192 for 1 vCPU, 4096-16384 for 2, 8192-30720 for 4 (steps of 1024), 16384-61440 for 8 (steps of 4096) and 32768-122880 for 16 (steps of 8192). 0 (the default): the least Fargate allows, 2048 MiB per vCPU."
  type        = number
  default     = 0

  validation {
    condition     = var.batch_memory == 0 || (var.batch_memory >= 2048 && var.batch_memory <= 122880 && var.batch_memory % 1024 == 0)
    error_message = "batch_memory must be 0 (2048 MiB per vCPU) or a multiple of 1024 MiB between 2048 and 122880."
  }
}

variable "batch_timeout" {
  description = "Seconds one attempt of a worker may run before Batch stops it (the job definition's attemptDurationSeconds). A child holds a few minutes of splits, so the default hour is headroom, not a budget."
  type        = number
  default     = 3600

  validation {
    condition     = var.batch_timeout >= 60 && floor(var.batch_timeout) == var.batch_timeout
    error_message = "batch_timeout must be a whole number of seconds, at least 60 (Batch's minimum)."
  }
}

variable "batch_retry_attempts" {
  description = "Attempts of each child (1-10): a Spot reclaim, an instance lost or any other failure but bad input is retried until they are used up; bad input (the worker's exit status 3) never is."
  type        = number
  default     = 3

  validation {
    condition     = var.batch_retry_attempts >= 1 && var.batch_retry_attempts <= 10 && floor(var.batch_retry_attempts) == var.batch_retry_attempts
    error_message = "batch_retry_attempts must be a whole number between 1 and 10."
  }
}

variable "batch_input_prefixes" {
  description = "S3 folders the Batch workers may read (s3:GetObject on every object below each), as \"bucket/prefix\" or \"s3://bucket/prefix/\"; \"bucket\" alone means the whole bucket. Empty (the default): no read grant."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for prefix in var.batch_input_prefixes : can(regex("^(s3://)?[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^*?]*)?$", prefix))])
    error_message = "Each batch_input_prefixes entry must be \"bucket/prefix\" or \"s3://bucket/prefix/\" (a valid bucket name, no * or ? wildcards)."
  }
}

variable "batch_output_prefixes" {
  description = "S3 folders the Batch workers write to (embed-corpus's OUTPUT/): s3:GetObject and s3:PutObject on every object below each (the plan, the parts, _SUCCESS) and s3:ListBucket limited to that folder (a missing part then answers 404, and the final job lists the parts). Empty (the default): no grant."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for prefix in var.batch_output_prefixes : can(regex("^(s3://)?[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^*?]*)?$", prefix))])
    error_message = "Each batch_output_prefixes entry must be \"bucket/prefix\" or \"s3://bucket/prefix/\" (a valid bucket name, no * or ? wildcards)."
  }
}

variable "batch_subnet_ids" {
  description = "Existing subnets to run the workers in. Empty (the default): batch.tf creates a VPC (batch_vpc_cidr) with one public subnet per availability zone (up to 3), an internet gateway and an S3 gateway endpoint. Given subnets must reach ECR, CloudWatch Logs and S3 on their own (a route to an internet gateway: the tasks get a public IP)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.batch_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "Each batch_subnet_ids entry must be a subnet id, subnet- followed by 8 to 17 hex digits."
  }
}

variable "batch_security_group_ids" {
  description = "Security groups of the workers when batch_subnet_ids is given (they need outbound HTTPS). With the VPC batch.tf creates, it creates the group too (outbound TCP 443 only) and this must stay empty."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.batch_security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", id))])
    error_message = "Each batch_security_group_ids entry must be a security group id, sg- followed by 8 to 17 hex digits."
  }
}

variable "batch_vpc_cidr" {
  description = "Address range of the VPC batch.tf creates when batch_subnet_ids is empty; each subnet gets a /20 of it (4,091 task addresses)."
  type        = string
  default     = "10.80.0.0/16"

  validation {
    condition     = can(regex("^[0-9.]+/(16|17|18)$", var.batch_vpc_cidr)) && can(cidrhost(var.batch_vpc_cidr, 0))
    error_message = "batch_vpc_cidr must be an IPv4 CIDR block of size /16 to /18, e.g. 10.80.0.0/16."
  }
}
