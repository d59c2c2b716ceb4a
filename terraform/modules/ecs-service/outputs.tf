output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "container_name" {
  description = "Name of the server's container in the task."
  value       = local.container_name
}

output "task_definition_arn" {
  description = "ARN of the task definition revision the service runs."
  value       = aws_ecs_task_definition.this.arn
}

output "security_group_id" {
  description = "Security group of the tasks."
  value       = aws_security_group.tasks.id
}

output "log_group_name" {
  description = "CloudWatch log group of the server."
  value       = aws_cloudwatch_log_group.this.name
}

output "stop_timeout_seconds" {
  description = "The container's stopTimeout: drain_timeout_seconds plus the margin for the server's exit."
  value       = local.stop_timeout_seconds
}
