output "websocket_url" {
  description = "URL clients connect to: on domain_name when set, else on the distribution's own name."
  value       = "wss://${local.custom_domain ? var.domain_name : module.cdn.domain_name}/wss"
}

output "publish_url" {
  description = "Where backends POST messages (null unless enable_http_publish): Authorization: Bearer <the key publish_api_key_command prints>."
  value       = var.enable_http_publish ? "https://${local.custom_domain ? var.domain_name : module.cdn.domain_name}/v1/publish" : null
}

output "publish_api_key_command" {
  description = "Prints the publish key from Secrets Manager (null unless enable_http_publish); the key itself is never in the state or an output."
  value       = var.enable_http_publish ? "aws secretsmanager get-secret-value --region ${data.aws_region.current.name} --secret-id ${module.publish_api_key[0].secret_arn} --query SecretString --output text" : null
}

output "origin_protocol" {
  description = "What CloudFront speaks to the load balancer: https (with domain_name) or http (in clear: the secret header and every frame; see origin_access for where it travels)."
  value       = local.custom_domain ? "https" : "http"
}

output "origin_access" {
  description = "Where CloudFront's requests to the load balancer travel: public (over the internet) or vpc (through a VPC origin, inside AWS's network)."
  value       = var.origin_access
}

output "load_balancer_url" {
  description = "The load balancer's own address (what `make smoke` checks refuses anyone but CloudFront): https://origin.<domain_name> with a domain, else http://<its DNS name>; internal with origin_access = \"vpc\"."
  value       = local.custom_domain ? "https://${module.domain[0].origin_domain_name}" : "http://${module.alb.dns_name}"
}

output "cloudfront_domain_name" {
  description = "Domain name of the CloudFront distribution."
  value       = module.cdn.domain_name
}

output "cloudfront_distribution_id" {
  description = "ID of the CloudFront distribution (e.g. for `aws cloudfront wait distribution-deployed`)."
  value       = module.cdn.distribution_id
}

output "alb_domain_name" {
  description = "DNS name of the load balancer (internal with origin_access = \"vpc\"); it answers 403 to anything that does not come through CloudFront."
  value       = module.alb.dns_name
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = module.ecs_cluster.cluster_name
}

output "service_name" {
  description = "Name of the ECS service."
  value       = module.ecs_service.service_name
}

output "ecr_repository_url" {
  description = "ECR repository `make image` pushes to."
  value       = module.ecr.repository_url
}

output "log_group_name" {
  description = "CloudWatch log group of the server."
  value       = module.ecs_service.log_group_name
}

output "access_log_group_name" {
  description = "CloudWatch log group, in us-east-1, of CloudFront's access logs."
  value       = module.cdn.access_log_group_name
}

output "origin_secret_rotation" {
  description = "What `make rotate-secret` invokes: the function and the payload of each phase (the secret's ARN, the distribution, origin and header; never a value)."
  value = {
    function_name = module.origin_secret.function_name
    input         = module.origin_secret.rotation_input
  }
}

output "ecs_exec_command" {
  description = "Opens a shell in one running task (null unless enable_execute_command)."
  value = var.enable_execute_command ? join(" ", [
    "aws ecs execute-command --region ${data.aws_region.current.name} --cluster ${module.ecs_cluster.cluster_name}",
    "--container ${module.ecs_service.container_name} --interactive --command /bin/sh",
    "--task \"$(aws ecs list-tasks --region ${data.aws_region.current.name} --cluster ${module.ecs_cluster.cluster_name} --service-name ${module.ecs_service.service_name} --query 'taskArns[0]' --output text)\"",
  ]) : null
}

output "dashboard_url" {
  description = "CloudWatch dashboard of the service: connections, messages, deliveries, evictions and rejections, CPU and memory per task, alarms."
  value       = module.monitoring.dashboard_url
}

output "alarm_names" {
  description = "The CloudWatch alarms, by purpose (they notify alarm_email when it is set)."
  value       = module.monitoring.alarm_names
}

output "ec2_tasks_per_instance" {
  description = "With run_on_ec2: how many tasks one instance of ec2_instance_type holds (the Auto Scaling group's maximum is sized from it); null on Fargate."
  value       = module.ecs_cluster.tasks_per_instance
}
