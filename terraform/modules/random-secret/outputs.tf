output "secret_arn" {
  description = "ARN of the secret."
  value       = aws_secretsmanager_secret.this.arn
}

output "version_id" {
  description = "Version that holds the drawn value: read it with the aws_secretsmanager_secret_version data source (secret_id = secret_arn, version_id = this)."
  value       = aws_secretsmanager_secret_version.this.version_id
}
