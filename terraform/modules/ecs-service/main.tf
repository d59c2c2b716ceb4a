data "aws_region" "current" {}

locals {
  container_name = "websocket-server"
  on_fargate     = var.capacity_provider == "FARGATE"

  # ECS sends SIGTERM, waits stopTimeout, then SIGKILLs: the margin covers the server's own exit
  # after its drain (closing sockets, last log lines) so a drain that runs its full course still
  # exits 0. See terraform/README.md, "Stopping a task".
  stop_timeout_seconds = var.drain_timeout_seconds + 15

  # The server's own default when unset (20 s, made to fit the drain), written out so the task
  # definition shows what the tasks run with.
  drain_spread_seconds = coalesce(var.drain_spread_seconds, max(0, min(20, var.drain_timeout_seconds - 5)))

  # ECS Exec runs the SSM agent inside the container, and the agent writes its state and logs under
  # /var/lib/amazon and /var/log/amazon: with a read-only root file system it dies at start unless
  # those two are writable task volumes (empty, and gone with the task). Only when Exec is on.
  execute_command_volumes = var.enable_execute_command ? ["/var/lib/amazon", "/var/log/amazon"] : []

  # Sockets that may be in the HTTP phase (not yet upgraded) at once, and the open-file limit: the
  # server refuses to start unless MAX_CONNECTIONS + MAX_HTTP_CONNECTIONS + 16 (its metrics port)
  # + 64 fit in it, and the rest of the headroom is for whatever else the process opens.
  max_http_connections = 1024
  open_files           = var.max_connections_per_task + local.max_http_connections + 1024

  environment = {
    PORT                 = tostring(var.container_port)
    MAX_CONNECTIONS      = tostring(var.max_connections_per_task)
    MAX_HTTP_CONNECTIONS = tostring(local.max_http_connections)
    PING_INTERVAL        = "${var.ping_interval_seconds}s"
    DRAIN_TIMEOUT        = "${var.drain_timeout_seconds}s"
    DRAIN_SPREAD         = "${local.drain_spread_seconds}s"
    # Longer than the load balancer's idle timeout, so the ALB is always the one to close an idle
    # keep-alive connection: a target that closes first can race a request the ALB is sending on
    # it, which the client sees as a 502.
    HTTP_IDLE_TIMEOUT  = "${var.load_balancer_idle_timeout_seconds + 15}s"
    TRUSTED_PROXY_HOPS = tostring(var.trusted_proxy_hops)
    LOG_FORMAT         = "json"
    LOG_LEVEL          = var.log_level
    EMF_INTERVAL       = "60s"
    METRICS_NAMESPACE  = var.metrics_namespace
    SERVICE_NAME       = var.name
  }
  all_environment = merge(var.extra_environment, local.environment)
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:Encrypted at rest by CloudWatch Logs with AWS owned keys; the server never logs message contents, so a customer managed key would add cost and a key policy without protecting anything.
  #checkov:skip=CKV_AWS_338:Connection logs are operational, not audit records; the retention is a variable.
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "assume_by_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Used by ECS itself to start the task: pull the image, create the log stream.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_by_ecs_tasks.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullThisRepositoryOnly"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  dynamic "statement" {
    for_each = length(var.secret_environment) > 0 ? [values(var.secret_environment)] : []

    content {
      sid       = "ReadOwnSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = statement.value
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-image-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# The server calls no AWS API; a task role exists only for ECS Exec's SSM channels.
resource "aws_iam_role" "task" {
  count = var.enable_execute_command ? 1 : 0

  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.assume_by_ecs_tasks.json
}

data "aws_iam_policy_document" "execute_command" {
  statement {
    sid = "EcsExecChannels"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "execute_command" {
  count = var.enable_execute_command ? 1 : 0

  name   = "ecs-exec"
  role   = aws_iam_role.task[0].id
  policy = data.aws_iam_policy_document.execute_command.json
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "Tasks of ${var.name}: the server port from the load balancer only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-tasks" }
}

resource "aws_vpc_security_group_ingress_rule" "from_load_balancer" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "WebSocket and health checks from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = var.load_balancer_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "Image pulls, logs and ECS Exec (SSM) over HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE", "EC2"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = var.enable_execute_command ? aws_iam_role.task[0].arn : null

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }

  dynamic "volume" {
    for_each = local.execute_command_volumes
    content {
      name = replace(trimprefix(volume.value, "/"), "/", "-")
    }
  }

  container_definitions = jsonencode([
    {
      name      = local.container_name
      image     = var.image
      essential = true
      # The image's non-root user (see the Dockerfile), stated here too so no image can run as root.
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      stopTimeout            = local.stop_timeout_seconds

      mountPoints = [for path in local.execute_command_volumes : {
        sourceVolume  = replace(trimprefix(path, "/"), "/", "-")
        containerPath = path
        readOnly      = false
      }]

      portMappings = [
        { containerPort = var.container_port, protocol = "tcp" },
      ]

      environment = [for key in sort(keys(local.all_environment)) : { name = key, value = local.all_environment[key] }]
      secrets     = [for key in sort(keys(var.secret_environment)) : { name = key, valueFrom = var.secret_environment[key] }]

      # One descriptor per connection, plus room for the process itself.
      ulimits = [
        { name = "nofile", softLimit = local.open_files, hardLimit = local.open_files },
      ]

      healthCheck = {
        command     = ["CMD", "/usr/local/bin/websocket-server", "healthcheck"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 10
      }

      # An init process as PID 1 forwards SIGTERM to the server and reaps what ECS Exec starts.
      linuxParameters = { initProcessEnabled = true }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "server"
          # A full log buffer drops lines instead of blocking the server's stdout.
          mode            = "non-blocking"
          max-buffer-size = "4m"
        }
      }
    },
  ])
}

resource "aws_ecs_service" "this" {
  #checkov:skip=CKV_AWS_333:Tasks get a public IP only in the no-NAT layout (public subnets, assign_public_ip), to pull images and ship logs; their security group admits only the load balancer.
  name                   = var.name
  cluster                = var.cluster_name
  task_definition        = aws_ecs_task_definition.this.arn
  desired_count          = var.desired_count
  enable_execute_command = var.enable_execute_command
  platform_version       = local.on_fargate ? "LATEST" : null

  health_check_grace_period_seconds  = var.health_check_grace_period_seconds
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  capacity_provider_strategy {
    capacity_provider = var.capacity_provider
    weight            = 1
  }
  # Moving between Fargate and EC2 capacity is then a new deployment of the same service; without
  # it, a changed strategy replaces the service, deleting it (and every connection) first.
  force_new_deployment = true

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = local.on_fargate && var.assign_public_ip
  }

  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = local.container_name
    container_port   = var.container_port
  }

  dynamic "ordered_placement_strategy" {
    for_each = local.on_fargate ? [] : ["attribute:ecs.availability-zone"]

    content {
      type  = "spread"
      field = ordered_placement_strategy.value
    }
  }

  lifecycle {
    # Auto scaling owns the task count once the service exists.
    ignore_changes = [desired_count]

    # Each task broadcasts to its own clients; only the Redis backplane carries a message to the
    # clients of the other tasks. Without it, a service that can run two tasks splits its clients
    # into groups that never hear each other, and nothing reports it.
    precondition {
      condition     = var.max_capacity == 1 || contains(keys(var.secret_environment), "REDIS_URL")
      error_message = "max_capacity is ${var.max_capacity} but the tasks have no REDIS_URL: without the Redis backplane a client on one task never receives what clients on another task send. Turn the backplane on (enable_redis_backplane = true, the default) or run a single task (min_capacity = max_capacity = desired_count = 1)."
    }

    # The module's own settings follow from its other inputs (the file limit from the connection
    # count, the idle timeout from the load balancer's); a second value would silently lose.
    precondition {
      condition     = length(setintersection(keys(var.extra_environment), setunion(keys(local.environment), keys(var.secret_environment)))) == 0
      error_message = "extra_environment sets ${join(", ", setintersection(keys(var.extra_environment), setunion(keys(local.environment), keys(var.secret_environment))))}, which this module or secret_environment already sets: change the module's input for it instead."
    }
  }
}

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value = var.cpu_target_percent
    # Scaling in closes every connection of the stopped task; wait longer before doing it again.
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# Connections per task, from the EMF line every task prints each minute: the average over tasks of
# ActiveConnections. Request count would not do: a WebSocket is one request however long it lives.
resource "aws_appautoscaling_policy" "connections" {
  name               = "${var.name}-connections"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.connections_target_per_task
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    customized_metric_specification {
      namespace   = var.metrics_namespace
      metric_name = "ActiveConnections"
      statistic   = "Average"
      unit        = "Count"

      dimensions {
        name  = "ServiceName"
        value = var.name
      }
    }
  }
}
