data "aws_partition" "current" {}

data "aws_iam_policy_document" "lambda_assume_role" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# Execution role: the function writes its logs and, only with api_key_source set, reads its
# one API-key secret (api_key.tf); it calls no other AWS service.
resource "aws_iam_role" "lambda" {
  # IAM role names are limited to 64 characters; function names may use all 64.
  name               = "${substr(var.function_name, 0, 57)}-lambda"
  description        = "Execution role of the ${var.function_name} Lambda function (CloudWatch Logs, and its API key when one is configured)"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume_role.json
}

resource "aws_iam_role_policy_attachment" "basic_execution" {
  role       = aws_iam_role.lambda.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}
