output "distribution_id" {
  description = "ID of the distribution."
  value       = aws_cloudfront_distribution.this.id
}

output "distribution_arn" {
  description = "ARN of the distribution."
  value       = aws_cloudfront_distribution.this.arn
}

output "domain_name" {
  description = "Domain name viewers connect to (<id>.cloudfront.net)."
  value       = aws_cloudfront_distribution.this.domain_name
}

output "origin_id" {
  description = "ID of the load balancer origin inside the distribution."
  value       = local.origin_id
}

output "log_bucket_name" {
  description = "S3 bucket receiving the standard logs (under cloudfront/)."
  value       = aws_s3_bucket.logs.id
}
