output "dns_name" {
  description = "DNS name of the load balancer (the CloudFront origin)."
  value       = aws_lb.this.dns_name
}

output "arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "security_group_id" {
  description = "Security group of the load balancer; targets admit traffic from it."
  value       = aws_security_group.this.id
}

output "listener_arn" {
  description = "ARN of the listener (HTTPS on 443 with a certificate, else HTTP on 80; default action: fixed 403)."
  value       = aws_lb_listener.this.arn
}

output "target_group_arn" {
  description = "ARN of the target group. Taken from the listener rule, so that whoever registers targets waits until the group is attached to the load balancer, as ECS requires."
  value       = aws_lb_listener_rule.forward_with_secret.action[0].target_group_arn
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the target group, for CloudWatch metrics."
  value       = aws_lb_target_group.this.arn_suffix
}

output "arn_suffix" {
  description = "ARN suffix of the load balancer (app/<name>/<id>), the LoadBalancer dimension of its CloudWatch metrics."
  value       = aws_lb.this.arn_suffix
}

output "zone_id" {
  description = "Route 53 hosted zone of the load balancer's DNS name, for an alias record to it."
  value       = aws_lb.this.zone_id
}
