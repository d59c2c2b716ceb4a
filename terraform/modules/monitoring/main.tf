data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  alarm_email = var.alarm_email == null ? "" : trimspace(var.alarm_email)
  notify      = local.alarm_email != ""
  # Alarms still exist without an address: their state shows in the console and on the dashboard.
  alarm_actions = local.notify ? [aws_sns_topic.alarms[0].arn] : []

  alb_dimensions = {
    LoadBalancer = var.load_balancer_arn_suffix
    TargetGroup  = var.target_group_arn_suffix
  }
  service_dimensions = {
    ClusterName = var.cluster_name
    ServiceName = var.service_name
  }
  # With min_capacity = max_capacity, "at its maximum" is the normal state, not news.
  watch_max_capacity = var.max_capacity > var.min_capacity

  region = data.aws_region.current.name
  console = lookup({
    aws-cn     = "https://console.amazonaws.cn"
    aws-us-gov = "https://console.amazonaws-us-gov.com"
  }, data.aws_partition.current.partition, "https://${local.region}.console.aws.amazon.com")
}

# --- Notifications: only with alarm_email.

# CloudWatch cannot publish to a topic encrypted with the AWS managed key for SNS (alias/aws/sns):
# its key policy cannot be changed to let cloudwatch.amazonaws.com use it, and the alarm's
# notifications would fail without a trace. Hence a key of the topic's own that CloudWatch may use.
resource "aws_kms_key" "alarms" {
  count = local.notify ? 1 : 0

  description         = "Encrypts the ${var.name} alarm topic; CloudWatch alarms may use it to publish."
  enable_key_rotation = true
  # The shortest wait: the key protects notifications in flight only, nothing stored.
  deletion_window_in_days = 7

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchAlarmsPublish"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "alarms" {
  count = local.notify ? 1 : 0

  name          = "alias/${var.name}-alarms"
  target_key_id = aws_kms_key.alarms[0].key_id
}

resource "aws_sns_topic" "alarms" {
  count = local.notify ? 1 : 0

  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.alarms[0].arn
}

resource "aws_sns_topic_subscription" "email" {
  count = local.notify ? 1 : 0

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = local.alarm_email
}

# --- Load balancer.

# The tasks answered 5xx. The server's own 5xx are the 503s refusing an upgrade at MAX_CONNECTIONS
# or while draining, so this is mostly "clients are being turned away" (the dashboard's rejection
# widget says which). The ALB publishes the metric only for minutes that had such responses, so a
# missing minute is a good one.
resource "aws_cloudwatch_metric_alarm" "target_5xx" {
  alarm_name          = "${var.name}-target-5xx"
  alarm_description   = "The ${var.service_name} tasks answered at least ${var.target_5xx_threshold} 5xx a minute in 3 of the last 5 minutes: mostly WebSocket upgrades refused with 503 (connection limit reached, or a task draining). Dashboard: ${var.name}."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = local.alb_dimensions
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.target_5xx_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Registered tasks failing the /health check for 3 minutes in a row: longer than a task takes to be
# replaced after failing it, so one bad task that ECS swaps out does not alarm. Draining and
# initial targets are not counted as unhealthy. A missing minute means no target group metrics at
# all, which the no-healthy-targets alarm reports.
resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  alarm_name          = "${var.name}-unhealthy-targets"
  alarm_description   = "At least one ${var.service_name} task has failed the load balancer's /health check for 3 minutes in a row."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.alb_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Nothing to send viewers to: the ALB answers 503 itself (HTTPCode_ELB_5XX, not the target metric
# above), and UnHealthyHostCount stays 0 when no task is registered at all, e.g. while every new
# task crashes before it registers. No data is treated as no healthy target.
resource "aws_cloudwatch_metric_alarm" "no_healthy_targets" {
  alarm_name          = "${var.name}-no-healthy-targets"
  alarm_description   = "No healthy ${var.service_name} task behind the load balancer for 2 minutes: every client is refused."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.alb_dimensions
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- Capacity.

# Auto scaling has set the service to max_capacity and kept it there for 15 minutes: it can add no
# task when connections or CPU grow further. DesiredTaskCount (Container Insights, which the
# ecs-cluster module enables) is what auto scaling asked for; RunningTaskCount would not do, as it
# goes up to twice the desired count during a deployment (maximum percent 200) and lags behind it
# when tasks cannot be placed. No data means Container Insights is off: the alarm then says
# INSUFFICIENT_DATA rather than a reassuring OK.
resource "aws_cloudwatch_metric_alarm" "at_max_capacity" {
  count = local.watch_max_capacity ? 1 : 0

  alarm_name          = "${var.name}-at-max-capacity"
  alarm_description   = "${var.service_name} has run at max_capacity (${var.max_capacity} tasks) for 15 minutes: auto scaling cannot add more. Raise max_capacity if connections per task or CPU stay above their targets."
  namespace           = "ECS/ContainerInsights"
  metric_name         = "DesiredTaskCount"
  dimensions          = local.service_dimensions
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.max_capacity
  treat_missing_data  = "missing"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- Backplane.

# Redis connections failing in 3 minutes out of 5. While Redis is away every task keeps retrying
# (backoff capped at 10 s), so each minute of an outage counts failures, and messages reach the
# clients of their own task only (BackplaneLocalOnly). A failover to a replica takes about a minute
# and stays below the threshold; a single node being replaced (no replica) takes minutes and does
# not. Every task reports the metric each minute, zeros included, so a missing minute means no task
# is running, which other alarms cover.
resource "aws_cloudwatch_metric_alarm" "backplane_errors" {
  count = var.enable_backplane ? 1 : 0

  alarm_name          = "${var.name}-backplane-errors"
  alarm_description   = "${var.service_name} tasks failed to connect to, or lost, the Redis backplane in 3 of the last 5 minutes: messages reach only the clients of the task they were sent to."
  namespace           = var.metrics_namespace
  metric_name         = "BackplaneConnectionFailures"
  dimensions          = { ServiceName = var.service_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- Tasks stopping unexpectedly.

# A task that ECS did not stop for scaling or a deployment: its essential container exited (a
# panic, an out-of-memory kill, a bad setting refused at start-up with exit 2), it failed to start
# (image pull, secrets), or ECS replaced it for failing the load balancer's or the container's
# health check. Counting the server's start-up lines instead would also count every scale-out and
# deployment, and a crash leaves no line of its own; the ECS task state change says why a task
# stopped, with its exit code.
resource "aws_cloudwatch_event_rule" "task_stopped" {
  name        = "${var.name}-task-stopped"
  description = "Tasks of ${var.service_name} stopped by a crash, a failed start or a failed health check."
  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn = [{ suffix = ":cluster/${var.cluster_name}" }]
      group      = ["service:${var.service_name}"]
      lastStatus = ["STOPPED"]
      "$or" = [
        { stopCode = ["EssentialContainerExited", "TaskFailedToStart"] },
        # "Task failed ELB health checks in (target-group ...)", "Task failed container health checks"
        { stoppedReason = [{ prefix = "Task failed" }] },
      ]
    }
  })
}

# The events themselves, so that the reason and exit code of a stop outlive the hour ECS keeps
# stopped tasks visible. Being a target also makes the rule report TriggeredRules, which the alarm
# reads.
resource "aws_cloudwatch_log_group" "task_stops" {
  #checkov:skip=CKV_AWS_158:Encrypted at rest by CloudWatch Logs with AWS owned keys; ECS task state changes carry no secrets, so a customer managed key would add cost and a key policy without protecting anything.
  #checkov:skip=CKV_AWS_338:Operational events for diagnosing stopped tasks, not audit records; the retention is a variable.
  name              = "/aws/events/${var.name}/task-stops"
  retention_in_days = var.log_retention_days
}

# EventBridge writes to CloudWatch Logs under a resource policy of the account and region (at most
# 10 of them, a quota AWS does not raise), limited here to this one log group.
resource "aws_cloudwatch_log_resource_policy" "task_stops" {
  policy_name = "${var.name}-task-stops-from-eventbridge"
  policy_document = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "EventBridgeWritesTaskStops"
      Effect    = "Allow"
      Principal = { Service = ["events.amazonaws.com", "delivery.logs.amazonaws.com"] }
      Action    = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource  = "${aws_cloudwatch_log_group.task_stops.arn}:*"
    }]
  })
}

resource "aws_cloudwatch_event_target" "task_stops" {
  rule      = aws_cloudwatch_event_rule.task_stopped.name
  target_id = "task-stops-log"
  arn       = aws_cloudwatch_log_group.task_stops.arn

  depends_on = [aws_cloudwatch_log_resource_policy.task_stops]
}

# One unexpected stop is worth a notification. EventBridge publishes TriggeredRules only for minutes
# in which the rule matched, so a missing minute is a quiet one.
resource "aws_cloudwatch_metric_alarm" "tasks_stopped" {
  alarm_name          = "${var.name}-tasks-stopped"
  alarm_description   = "A ${var.service_name} task stopped by a crash, a failed start or a failed health check in the last 5 minutes; the reason and exit code are in the log group ${aws_cloudwatch_log_group.task_stops.name}."
  namespace           = "AWS/Events"
  metric_name         = "TriggeredRules"
  dimensions          = { RuleName = aws_cloudwatch_event_rule.task_stopped.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- Dashboard.

locals {
  alarms = merge(
    {
      target_5xx         = aws_cloudwatch_metric_alarm.target_5xx
      unhealthy_targets  = aws_cloudwatch_metric_alarm.unhealthy_targets
      no_healthy_targets = aws_cloudwatch_metric_alarm.no_healthy_targets
      tasks_stopped      = aws_cloudwatch_metric_alarm.tasks_stopped
    },
    local.watch_max_capacity ? { at_max_capacity = aws_cloudwatch_metric_alarm.at_max_capacity[0] } : {},
    var.enable_backplane ? { backplane_errors = aws_cloudwatch_metric_alarm.backplane_errors[0] } : {},
  )

  # A metric of the server's EMF line, one series for the whole service (every task's values added
  # up, or averaged, by the statistic).
  emf = { for name in [
    "ActiveConnections", "ConnectionsOpened", "MessagesReceived", "MessagesBroadcast", "MessagesDelivered",
    "SlowConsumerEvictions", "RateLimitedCloses", "UpgradesRejectedConnectionLimit", "UpgradesRejectedDraining",
    "MessagesDroppedRateLimited", "MessagesDroppedInvalidJson", "MessagesDroppedTooDeep",
    "BackplaneConnectionFailures", "BackplaneLocalOnly",
  ] : name => [var.metrics_namespace, name, "ServiceName", var.service_name] }
  alb_metric = { for name in ["HTTPCode_Target_5XX_Count", "UnHealthyHostCount", "HealthyHostCount"] :
  name => ["AWS/ApplicationELB", name, "LoadBalancer", var.load_balancer_arn_suffix, "TargetGroup", var.target_group_arn_suffix] }

  # Counters in the EMF line are per line (about a minute); divided by the period they read per second.
  per_second = { for name in ["MessagesReceived", "MessagesBroadcast", "MessagesDelivered"] : name => [
    [{ expression = "${lower(name)} / PERIOD(${lower(name)})", label = "${name} / s", id = "${lower(name)}_s" }],
    concat(local.emf[name], [{ stat = "Sum", id = lower(name), visible = false }]),
  ] }

  widget = {
    view    = "timeSeries"
    region  = local.region
    period  = 60
    stacked = false
  }

  widgets = concat(
    [
      {
        type = "alarm", x = 0, y = 0, width = 24, height = 3
        properties = {
          title  = "Alarms"
          alarms = [for key in sort(keys(local.alarms)) : local.alarms[key].arn]
        }
      },
      {
        type = "metric", x = 0, y = 3, width = 12, height = 6
        properties = merge(local.widget, {
          title = "Open WebSocket connections"
          metrics = [
            concat(local.emf.ActiveConnections, [{ stat = "Sum", label = "All tasks" }]),
            concat(local.emf.ActiveConnections, [{ stat = "Average", label = "Per task (average)", yAxis = "right" }]),
            concat(local.emf.ActiveConnections, [{ stat = "Maximum", label = "Busiest task", yAxis = "right" }]),
          ]
        })
      },
      {
        type = "metric", x = 12, y = 3, width = 12, height = 6
        properties = merge(local.widget, {
          title = "Tasks"
          metrics = [
            ["ECS/ContainerInsights", "DesiredTaskCount", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Maximum", label = "Desired" }],
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Maximum", label = "Running" }],
          ]
          annotations = { horizontal = [{ label = "max_capacity", value = var.max_capacity }] }
        })
      },
      {
        type = "metric", x = 0, y = 9, width = 12, height = 6
        properties = merge(local.widget, {
          title   = "Messages per second (received from clients, broadcast)"
          metrics = concat(local.per_second.MessagesReceived, local.per_second.MessagesBroadcast)
        })
      },
      {
        type = "metric", x = 12, y = 9, width = 12, height = 6
        properties = merge(local.widget, {
          title   = "Deliveries per second (frames written to clients)"
          metrics = local.per_second.MessagesDelivered
        })
      },
      {
        type = "metric", x = 0, y = 15, width = 12, height = 6
        properties = merge(local.widget, {
          title = "Connections opened, and clients closed by the server (per minute)"
          metrics = [
            concat(local.emf.ConnectionsOpened, [{ stat = "Sum", label = "Opened", yAxis = "right" }]),
            concat(local.emf.SlowConsumerEvictions, [{ stat = "Sum", label = "Evicted: a queue behind (1013)" }]),
            concat(local.emf.RateLimitedCloses, [{ stat = "Sum", label = "Over the rate limit for 5 s (1008)" }]),
          ]
        })
      },
      {
        type = "metric", x = 12, y = 15, width = 12, height = 6
        properties = merge(local.widget, {
          title = "Rejections by reason (per minute)"
          metrics = [
            concat(local.emf.UpgradesRejectedConnectionLimit, [{ stat = "Sum", label = "Upgrade 503: connection limit" }]),
            concat(local.emf.UpgradesRejectedDraining, [{ stat = "Sum", label = "Upgrade 503: draining" }]),
            concat(local.emf.MessagesDroppedRateLimited, [{ stat = "Sum", label = "Message dropped: rate limited" }]),
            concat(local.emf.MessagesDroppedInvalidJson, [{ stat = "Sum", label = "Message dropped: invalid JSON" }]),
            concat(local.emf.MessagesDroppedTooDeep, [{ stat = "Sum", label = "Message dropped: too deep" }]),
          ]
        })
      },
      {
        type = "metric", x = 0, y = 21, width = 12, height = 6
        properties = merge(local.widget, {
          title = "CPU and memory per task (% of the task's size)"
          metrics = [
            ["AWS/ECS", "CPUUtilization", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Average", label = "CPU, average task" }],
            ["AWS/ECS", "CPUUtilization", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Maximum", label = "CPU, busiest task" }],
            ["AWS/ECS", "MemoryUtilization", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Average", label = "Memory, average task" }],
            ["AWS/ECS", "MemoryUtilization", "ClusterName", var.cluster_name, "ServiceName", var.service_name, { stat = "Maximum", label = "Memory, fullest task" }],
          ]
          yAxis = { left = { min = 0, max = 100 } }
        })
      },
      {
        type = "metric", x = 12, y = 21, width = 12, height = 6
        properties = merge(local.widget, {
          title = "Load balancer targets and 5xx (per minute)"
          metrics = [
            concat(local.alb_metric.HealthyHostCount, [{ stat = "Minimum", label = "Healthy tasks" }]),
            concat(local.alb_metric.UnHealthyHostCount, [{ stat = "Maximum", label = "Unhealthy tasks" }]),
            concat(local.alb_metric.HTTPCode_Target_5XX_Count, [{ stat = "Sum", label = "Task 5xx", yAxis = "right" }]),
            ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", var.load_balancer_arn_suffix, { stat = "Sum", label = "Load balancer 5xx", yAxis = "right" }],
          ]
        })
      },
      {
        type = "metric", x = 0, y = 27, width = 12, height = 6
        properties = merge(local.widget, {
          title   = "Tasks stopped by a crash, a failed start or a failed health check"
          period  = 300
          metrics = [["AWS/Events", "TriggeredRules", "RuleName", aws_cloudwatch_event_rule.task_stopped.name, { stat = "Sum", label = "Stopped tasks" }]]
        })
      },
      {
        type = "log", x = 12, y = 27, width = 12, height = 6
        properties = {
          title  = "Why tasks stopped (${aws_cloudwatch_log_group.task_stops.name})"
          region = local.region
          view   = "table"
          query  = "SOURCE '${aws_cloudwatch_log_group.task_stops.name}' | fields @timestamp, detail.taskArn, detail.stopCode, detail.stoppedReason, detail.containers.0.exitCode | sort @timestamp desc | limit 20"
        }
      },
      {
        type = "log", x = 0, y = 33, width = 24, height = 6
        properties = {
          title  = "Server warnings and errors (${var.log_group_name})"
          region = local.region
          view   = "table"
          query  = "SOURCE '${var.log_group_name}' | fields @timestamp, level, message, @logStream | filter level = 'WARN' or level = 'ERROR' | sort @timestamp desc | limit 50"
        }
      },
    ],
    var.enable_backplane ? [
      {
        type = "metric", x = 0, y = 39, width = 24, height = 6
        properties = merge(local.widget, {
          title = "Redis backplane (per minute)"
          metrics = [
            concat(local.emf.BackplaneConnectionFailures, [{ stat = "Sum", label = "Connections failed or lost" }]),
            concat(local.emf.BackplaneLocalOnly, [{ stat = "Sum", label = "Messages kept to their own task", yAxis = "right" }]),
          ]
        })
      },
    ] : [],
  )
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.widgets })
}
