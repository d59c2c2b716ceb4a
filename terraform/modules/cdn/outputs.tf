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

output "access_log_group_name" {
  description = "CloudWatch log group (in us-east-1) receiving the access logs."
  value       = aws_cloudwatch_log_group.access.name
}

output "hosted_zone_id" {
  description = "CloudFront's Route 53 zone, for alias records to the distribution."
  value       = aws_cloudfront_distribution.this.hosted_zone_id
}

output "vpc_origin_security_group_id" {
  description = "With vpc_origin: the security group CloudFront gave the VPC origin's network interfaces, for the load balancer to admit. Null without."
  value       = one(data.aws_security_group.vpc_origin[*].id)
}
