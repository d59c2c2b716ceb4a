output "cluster_name" {
  description = "Name of the cluster. Taken from the capacity provider association, so services created with it can use both capacity providers."
  value       = aws_ecs_cluster_capacity_providers.this.cluster_name
}

output "cluster_arn" {
  description = "ARN of the cluster."
  value       = aws_ecs_cluster.this.arn
}

output "fargate_capacity_provider_name" {
  description = "Name of the Fargate capacity provider."
  value       = "FARGATE"
}

output "ec2_capacity_provider_name" {
  description = "Name of the capacity provider backed by the Graviton Auto Scaling group (null without enable_ec2_capacity)."
  value       = one(aws_ecs_capacity_provider.ec2[*].name)
}

output "autoscaling_group_name" {
  description = "Name of the Auto Scaling group of container instances (null without enable_ec2_capacity)."
  value       = one(aws_autoscaling_group.this[*].name)
}

output "tasks_per_instance" {
  description = "Tasks one container instance holds, after the kernel's and the ECS agent's memory reserve (null without enable_ec2_capacity)."
  value       = var.enable_ec2_capacity ? local.tasks_per_instance : null
}

output "max_instances" {
  description = "The Auto Scaling group's maximum: enough instances for max_tasks (null without enable_ec2_capacity)."
  value       = var.enable_ec2_capacity ? local.max_instances : null
}
