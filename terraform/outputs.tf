output "function_url" {
  description = "HTTPS endpoint of the function (POST JSON to it)."
  value       = aws_lambda_function_url.this.function_url
}

output "repository_url" {
  description = "ECR repository to push the Lambda image to (<account>.dkr.ecr.<region>.amazonaws.com/<name>)."
  value       = aws_ecr_repository.this.repository_url
}

output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "image_uri" {
  description = "Image the function runs (repository@digest when image_digest is set)."
  value       = aws_lambda_function.this.image_uri
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = aws_cloudwatch_log_group.lambda.name
}

output "api_key_secret_arn" {
  description = "ARN of the secret or SSM parameter holding the API key (empty when api_key_source = \"none\")."
  value       = local.api_key_arn
}

output "api_key_command" {
  description = "An AWS CLI command that prints the API key (empty when api_key_source = \"none\")."
  value = {
    none           = ""
    secretsmanager = "aws secretsmanager get-secret-value --region ${var.region} --secret-id ${local.api_key_arn} --query SecretString --output text"
    ssm            = "aws ssm get-parameter --region ${var.region} --with-decryption --name ${local.api_key_arn} --query Parameter.Value --output text"
  }[var.api_key_source]
}

output "curl_example" {
  description = "A curl command that calls the function. With AWS_IAM it signs the request with SigV4 (service \"lambda\") from the AWS_* credential variables; the caller needs lambda:InvokeFunctionUrl (and lambda:InvokeFunction) on the function. With an API key it sends $API_KEY as a bearer token (see api_key_command)."
  value = (
    var.function_url_auth_type == "NONE"
    ? "curl ${local.curl_api_key_header}-H 'Content-Type: application/json' -d '{\"input\": \"hello, world!\"}' ${aws_lambda_function_url.this.function_url}"
    : "curl --aws-sigv4 \"aws:amz:${var.region}:lambda\" --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\" -H \"x-amz-security-token: $AWS_SESSION_TOKEN\" -H 'Content-Type: application/json' -d '{\"input\": \"hello, world!\"}' ${aws_lambda_function_url.this.function_url}"
  )
}

output "bulk_function_name" {
  description = "Name of the bulk function (<function_name>-bulk) for embed-corpus --target lambda://<name>; empty when bulk_function_enabled = false."
  value       = var.bulk_function_enabled ? aws_lambda_function.bulk[0].function_name : ""
}

output "batch_job_queue_name" {
  description = "The AWS Batch job queue (Fargate Spot, then on-demand Fargate) for embed-corpus --target batch://<name>; empty when enable_batch = false."
  value       = var.enable_batch ? aws_batch_job_queue.this[0].name : ""
}

output "batch_job_definition_name" {
  description = "The AWS Batch job definition of the worker (embed-corpus-worker) for embed-corpus --batch-job-definition <name>; empty when enable_batch = false."
  value       = var.enable_batch ? aws_batch_job_definition.worker[0].name : ""
}

output "batch_log_group_name" {
  description = "CloudWatch log group of the Batch workers; empty when enable_batch = false."
  value       = var.enable_batch ? aws_cloudwatch_log_group.batch[0].name : ""
}

output "bulk_image_uri" {
  description = "Image the bulk function runs (repository@digest when bulk_image_digest is set); empty when bulk_function_enabled = false. scripts/deploy.sh plan --bulk plans against it."
  value       = var.bulk_function_enabled ? aws_lambda_function.bulk[0].image_uri : ""
}

output "batch_image_uri" {
  description = "Image the Batch job definition runs (repository@digest when batch_image_digest is set); empty when enable_batch = false. scripts/deploy.sh plan --batch plans against it."
  value       = var.enable_batch ? local.batch_image_uri : ""
}
