output "redis_url_secret_arn" {
  description = "ARN of the Secrets Manager secret holding REDIS_URL, for the task definition's secrets. Taken from the secret's value, so tasks start only once it holds the URL."
  value       = aws_secretsmanager_secret_version.redis_url.arn
}

output "primary_endpoint_address" {
  description = "Address of the primary node."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "security_group_id" {
  description = "Security group of the cache."
  value       = aws_security_group.this.id
}
