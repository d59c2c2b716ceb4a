output "cloudfront_certificate_arn" {
  description = "The domain's certificate in us-east-1, once ACM has validated it (for the distribution)."
  value       = aws_acm_certificate_validation.cloudfront.certificate_arn
}

output "origin_certificate_arn" {
  description = "The origin name's certificate in the stack's region, once validated (for the load balancer's HTTPS listener)."
  value       = aws_acm_certificate_validation.origin.certificate_arn
}

output "origin_domain_name" {
  description = "origin.<domain_name>: CloudFront's name for the load balancer, covered by origin_certificate_arn."
  value       = local.origin_domain_name
}

output "domain_name" {
  description = "The name viewers connect to."
  value       = var.domain_name
}
