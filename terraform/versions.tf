terraform {
  # Nothing here needs a newer Terraform than 1.5; the repository is checked with 1.11.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.28.0 added aws_lambda_permission.invoked_via_function_url, which a public
      # (auth NONE) Function URL needs since October 2025 (see lambda.tf).
      version = "~> 6.28"
    }
  }
}

provider "aws" {
  region = var.region

  # Every taggable resource gets these tags (ECR repository, IAM role, log group, function).
  default_tags {
    tags = var.tags
  }
}
