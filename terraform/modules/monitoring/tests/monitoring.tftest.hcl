# The alarms, notifications and dashboard, with a mocked AWS provider (no account needed). Runs
# that read ARNs (alarm actions, the dashboard's alarm widget) apply against the mock, which makes
# them up; the others only plan.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  # ARNs the provider validates where they are passed on.
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/events/websocket-test/task-stops" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-west-1:123456789012:websocket-test-alarms" }
  }
  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = { arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:websocket-test" }
  }
}

variables {
  name                     = "websocket-test"
  metrics_namespace        = "WebSocketService"
  service_name             = "websocket-test"
  cluster_name             = "websocket-test"
  load_balancer_arn_suffix = "app/websocket-test/0123456789abcdef"
  target_group_arn_suffix  = "targetgroup/websocket-test/0123456789abcdef"
  min_capacity             = 2
  max_capacity             = 10
  log_group_name           = "/ecs/websocket-test"
}

run "alarms_without_email_or_backplane" {
  command = apply

  assert {
    condition     = aws_cloudwatch_metric_alarm.target_5xx.metric_name == "HTTPCode_Target_5XX_Count" && aws_cloudwatch_metric_alarm.target_5xx.dimensions.TargetGroup == var.target_group_arn_suffix
    error_message = "The 5xx alarm reads the target group's HTTPCode_Target_5XX_Count."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.unhealthy_targets.metric_name == "UnHealthyHostCount" && aws_cloudwatch_metric_alarm.unhealthy_targets.threshold == 0
    error_message = "The unhealthy-targets alarm fires on any unhealthy target."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.at_max_capacity[0].metric_name == "DesiredTaskCount" && aws_cloudwatch_metric_alarm.at_max_capacity[0].threshold == 10
    error_message = "The capacity alarm compares the desired count with max_capacity."
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.task_stopped.event_pattern).detail.group == ["service:websocket-test"] && aws_cloudwatch_metric_alarm.tasks_stopped.dimensions.RuleName == aws_cloudwatch_event_rule.task_stopped.name
    error_message = "The tasks-stopped alarm counts the matches of this service's task-stop rule."
  }
  assert {
    condition     = aws_cloudwatch_event_target.task_stops.arn == aws_cloudwatch_log_group.task_stops.arn
    error_message = "The rule's events go to the task-stops log group."
  }
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.backplane_errors) == 0 && !contains(keys(output.alarm_names), "backplane_errors")
    error_message = "No backplane alarm without enable_backplane."
  }
  assert {
    condition     = length(aws_sns_topic.alarms) == 0 && length(aws_sns_topic_subscription.email) == 0 && length(aws_kms_key.alarms) == 0 && output.alarm_topic_arn == null
    error_message = "No topic, subscription or key without alarm_email."
  }
  assert {
    condition = alltrue([
      for alarm in [
        aws_cloudwatch_metric_alarm.target_5xx, aws_cloudwatch_metric_alarm.unhealthy_targets,
        aws_cloudwatch_metric_alarm.no_healthy_targets, aws_cloudwatch_metric_alarm.tasks_stopped,
        aws_cloudwatch_metric_alarm.at_max_capacity[0],
      ] : length(alarm.alarm_actions) == 0
    ])
    error_message = "Without alarm_email the alarms exist with no actions."
  }
  assert {
    condition     = length(output.alarm_names) == 5
    error_message = "Five alarms without the backplane."
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.target_5xx.treat_missing_data == "notBreaching" &&
      aws_cloudwatch_metric_alarm.no_healthy_targets.treat_missing_data == "breaching" &&
      aws_cloudwatch_metric_alarm.at_max_capacity[0].treat_missing_data == "missing" &&
      aws_cloudwatch_metric_alarm.tasks_stopped.treat_missing_data == "notBreaching"
    )
    error_message = "Missing data: a good minute for the 5xx and stop counts, no healthy target for HealthyHostCount, unknown for Container Insights."
  }
}

run "dashboard_shows_the_metrics" {
  command = apply

  variables {
    enable_backplane = true
  }

  assert {
    condition = alltrue([
      for metric in [
        "ActiveConnections", "MessagesReceived", "MessagesBroadcast", "MessagesDelivered",
        "SlowConsumerEvictions", "RateLimitedCloses", "UpgradesRejectedConnectionLimit", "UpgradesRejectedDraining",
        "MessagesDroppedRateLimited", "MessagesDroppedInvalidJson", "MessagesDroppedTooDeep",
        "BackplaneConnectionFailures", "BackplaneLocalOnly",
        "CPUUtilization", "MemoryUtilization", "DesiredTaskCount", "HTTPCode_Target_5XX_Count", "TriggeredRules",
      ] : contains(flatten([for widget in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : try(widget.properties.metrics, [])]), metric)
    ])
    error_message = "The dashboard graphs every EMF metric, CPU and memory, task counts, 5xx and task stops."
  }
  assert {
    condition = alltrue([
      for widget in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : alltrue([
        for metric in try(widget.properties.metrics, []) :
        can(metric[0].expression) || contains(["WebSocketService", "AWS/ECS", "ECS/ContainerInsights", "AWS/ApplicationELB", "AWS/Events"], try(tostring(metric[0]), ""))
      ])
    ])
    error_message = "Every graphed metric is an array: a namespace (the server's or an AWS one) and a name, or one expression object."
  }
  assert {
    condition     = strcontains(aws_cloudwatch_dashboard.this.dashboard_body, "SOURCE '/ecs/websocket-test'")
    error_message = "The dashboard lists the server's warnings and errors from its log group."
  }
  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets[0].properties.alarms) == 6
    error_message = "The alarm widget shows all six alarms."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.backplane_errors[0].metric_name == "BackplaneConnectionFailures" && aws_cloudwatch_metric_alarm.backplane_errors[0].namespace == "WebSocketService" && aws_cloudwatch_metric_alarm.backplane_errors[0].dimensions.ServiceName == "websocket-test"
    error_message = "With enable_backplane, an alarm on the server's BackplaneConnectionFailures."
  }
  assert {
    condition     = output.dashboard_url == "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/websocket-test"
    error_message = "The dashboard URL points at the console of the region."
  }
}

run "email_gets_an_encrypted_topic" {
  command = apply

  variables {
    alarm_email = "ops@example.com"
  }

  assert {
    condition     = length(aws_sns_topic_subscription.email) == 1 && aws_sns_topic_subscription.email[0].protocol == "email" && aws_sns_topic_subscription.email[0].endpoint == "ops@example.com"
    error_message = "alarm_email gets an email subscription."
  }
  assert {
    condition     = aws_sns_topic.alarms[0].kms_master_key_id == aws_kms_key.alarms[0].arn && aws_kms_key.alarms[0].enable_key_rotation
    error_message = "The topic is encrypted with its own rotated key (CloudWatch cannot use alias/aws/sns)."
  }
  assert {
    condition     = jsondecode(aws_kms_key.alarms[0].policy).Statement[1].Principal.Service == "cloudwatch.amazonaws.com"
    error_message = "The key policy lets CloudWatch alarms publish."
  }
  assert {
    condition     = output.alarm_topic_arn == aws_sns_topic.alarms[0].arn
    error_message = "The topic ARN is an output."
  }
  assert {
    condition = alltrue([
      for alarm in [
        aws_cloudwatch_metric_alarm.target_5xx, aws_cloudwatch_metric_alarm.unhealthy_targets,
        aws_cloudwatch_metric_alarm.no_healthy_targets, aws_cloudwatch_metric_alarm.tasks_stopped,
        aws_cloudwatch_metric_alarm.at_max_capacity[0],
      ] : alarm.alarm_actions == toset([aws_sns_topic.alarms[0].arn]) && alarm.ok_actions == toset([aws_sns_topic.alarms[0].arn])
    ])
    error_message = "Every alarm notifies the topic when it fires and when it recovers."
  }
}

run "a_fixed_size_service_has_no_capacity_alarm" {
  command = plan

  variables {
    min_capacity = 1
    max_capacity = 1
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.at_max_capacity) == 0
    error_message = "With min_capacity = max_capacity the service is always at its maximum: no alarm."
  }
}

run "a_bad_email_is_refused" {
  command = plan

  variables {
    alarm_email = "ops.example.com"
  }

  expect_failures = [var.alarm_email]
}

run "a_target_group_arn_is_not_a_suffix" {
  command = plan

  variables {
    target_group_arn_suffix = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/websocket-test/0123456789abcdef"
  }

  expect_failures = [var.target_group_arn_suffix]
}
