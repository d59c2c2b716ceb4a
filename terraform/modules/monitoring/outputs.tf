output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "dashboard_url" {
  description = "Console address of the dashboard."
  value       = "${local.console}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this.dashboard_name}"
}

output "alarm_names" {
  description = "Names of the alarms by purpose: target_5xx, unhealthy_targets, no_healthy_targets, tasks_stopped, at_max_capacity (unless min_capacity = max_capacity), backplane_errors (with enable_backplane)."
  value       = { for key, alarm in local.alarms : key => alarm.alarm_name }
}

output "alarm_topic_arn" {
  description = "ARN of the SNS topic the alarms notify (null without alarm_email)."
  value       = one(aws_sns_topic.alarms[*].arn)
}

output "task_stops_log_group_name" {
  description = "Log group holding the ECS events of tasks stopped by a crash, a failed start or a failed health check (reason, exit code)."
  value       = aws_cloudwatch_log_group.task_stops.name
}
