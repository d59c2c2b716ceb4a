output "function_name" {
  description = "Name of the Lambda function (`make rotate-secret` invokes it)."
  value       = aws_lambda_function.this.function_name
}

output "secret_arn" {
  description = "ARN of the Secrets Manager secret holding the header's values."
  value       = aws_secretsmanager_secret.this.arn
}

output "header_name" {
  description = "Name of the secret header on the origin."
  value       = var.header_name
}

output "current_header_value" {
  description = "The value CloudFront sends (for a distribution being created)."
  value       = local.document.current
  sensitive   = true
}

output "accepted_header_values" {
  description = "Values the origin must accept: the current one, and during a rotation the pending or the previous one."
  value       = local.accepted_values
  sensitive   = true
}

output "rotation_input" {
  description = "The payload `make rotate-secret` sends with each phase (\"Rotate\": prepare, promote or retire added): which secret, distribution, origin and header. No value."
  value = {
    SecretId       = aws_secretsmanager_secret.this.arn
    DistributionId = var.distribution_id
    OriginId       = var.origin_id
    HeaderName     = var.header_name
  }
}
