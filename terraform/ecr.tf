# The repository the Lambda image is pushed to. scripts/deploy.sh creates it first, on its
# own (terraform apply -target=aws_ecr_repository.this), so there is somewhere to push to
# before the function that needs the image exists.
resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_51:Tags stay MUTABLE on purpose: every deploy re-pushes the same tag, and the function is pinned to the pushed image's digest (repo@sha256:...), so a moved tag never changes what runs.
  #checkov:skip=CKV_AWS_136:Images are encrypted at rest with ECR's AES-256 (SSE-S3) keys; the public model weights and code need no customer-managed KMS key and its cost.
  name = var.repository_name

  # MUTABLE: deploy.sh re-pushes its tag (default "latest") on every deploy and pins the
  # function to the digest it pushed, so the tag is only a convenience label.
  image_tag_mutability = "MUTABLE"

  # Let `terraform destroy` delete the repository even though it still holds images.
  force_delete = true

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "AES256"
  }
}

# Keep only the newest images; every deploy pushes one, and storage is billed per GB-month.
resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Keep only the ${var.ecr_max_images} most recent images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_max_images
        }
        action = {
          type = "expire"
        }
      }
    ]
  })
}
